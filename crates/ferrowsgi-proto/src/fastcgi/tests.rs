use super::*;
use crate::BodyKind;

/// A record with `pad` bytes of padding.
fn rec(kind: u8, id: u16, content: &[u8], pad: u8) -> Vec<u8> {
    let mut v = vec![
        VERSION_1,
        kind,
        (id >> 8) as u8,
        id as u8,
        (content.len() >> 8) as u8,
        content.len() as u8,
        pad,
        0,
    ];
    v.extend_from_slice(content);
    v.extend(std::iter::repeat(0xAA).take(usize::from(pad)));
    v
}

fn begin(id: u16, role: u16, keep: bool) -> Vec<u8> {
    let [r1, r0] = role.to_be_bytes();
    rec(
        BEGIN_REQUEST,
        id,
        &[r1, r0, u8::from(keep), 0, 0, 0, 0, 0],
        0,
    )
}

/// Name-value pairs; a length of 128 or more takes the 4-byte form.
fn pairs(list: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    let len = |v: &mut Vec<u8>, n: usize| {
        if n < 128 {
            v.push(n as u8);
        } else {
            v.extend_from_slice(&(n as u32 | 0x8000_0000).to_be_bytes());
        }
    };
    for (n, val) in list {
        len(&mut v, n.len());
        len(&mut v, val.len());
        v.extend_from_slice(n);
        v.extend_from_slice(val);
    }
    v
}

/// PARAMS records for `list` (split every `per` bytes) and the empty one.
fn params(id: u16, list: &[(&[u8], &[u8])], per: usize) -> Vec<u8> {
    let p = pairs(list);
    let mut v = Vec::new();
    for c in p.chunks(per) {
        v.extend(rec(PARAMS, id, c, 3));
    }
    v.extend(rec(PARAMS, id, &[], 0));
    v
}

const GET: &[(&[u8], &[u8])] = &[
    (b"REQUEST_METHOD", b"GET"),
    (b"REQUEST_URI", b"/a%20b?q=1"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"),
    (b"CONTENT_LENGTH", b""),
    (b"HTTP_HOST", b"example.com"),
    (b"REMOTE_ADDR", b"192.0.2.9"),
];

fn get_request(id: u16, keep: bool) -> Vec<u8> {
    let mut w = begin(id, ROLE_RESPONDER, keep);
    w.extend(params(id, GET, 1000));
    w.extend(rec(STDIN, id, &[], 0));
    w
}

type Pair = (Vec<u8>, Vec<u8>);
/// Method, target, headers, server variables, keep-alive.
type HeadSeen = (Vec<u8>, Vec<u8>, Vec<Pair>, Vec<Pair>, bool);

/// Everything a connection does with `wire` offered in `pieces`: the head
/// (method, target, headers, vars, keep-alive), the body, the output, and
/// how it ended.
#[derive(Debug, PartialEq)]
struct Run {
    heads: Vec<HeadSeen>,
    bodies: Vec<Vec<u8>>,
    output: Vec<u8>,
    end: Result<(), String>,
}

/// Serves requests from `wire`, delivered at the `cuts`, reading each body
/// `max_out` bytes at a time and answering each request with "ok".
fn serve(wire: &[u8], cuts: &[usize], max_out: usize) -> Run {
    let limits = Limits::default();
    let mut c = FcgiConn::new(Settings::default());
    let mut run = Run {
        heads: vec![],
        bodies: vec![],
        output: vec![],
        end: Ok(()),
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut cuts = cuts.iter().copied().chain([wire.len()]);
    let mut feed = |pending: &mut Vec<u8>, fed: &mut usize| -> bool {
        match cuts.next() {
            Some(to) => {
                let to = to.clamp(*fed, wire.len());
                pending.extend_from_slice(&wire[*fed..to]);
                *fed = to;
                true
            }
            None => false,
        }
    };
    let mut in_body = false;
    loop {
        if !in_body {
            match c.decode_head(&pending, &limits) {
                Ok((n, head)) => {
                    assert!(n <= pending.len());
                    pending.drain(..n);
                    c.take_output(&mut run.output);
                    if c.wants_close() {
                        return run;
                    }
                    if let Some(h) = head {
                        run.heads.push((
                            h.method().to_vec(),
                            h.target().to_vec(),
                            h.headers().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
                            h.vars().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
                            h.keep_alive(),
                        ));
                        run.bodies.push(vec![]);
                        in_body = true;
                        continue;
                    }
                    assert!(pending.is_empty(), "head decoding left bytes");
                }
                Err(e) => {
                    c.take_output(&mut run.output);
                    c.write_error(&mut run.output, e.status(), e.reason(), e.message());
                    run.end = Err(e.message().to_string());
                    return run;
                }
            }
        } else {
            let body = run.bodies.last_mut().unwrap();
            match c.decode(&pending, body, max_out) {
                Ok(n) => {
                    pending.drain(..n);
                    c.take_output(&mut run.output);
                    if c.is_done() {
                        let mut out = Vec::new();
                        c.write_head(&mut out, b"200 OK", []);
                        c.write_block(&mut out, b"ok");
                        let keep = c.write_end(&mut out);
                        run.output.extend(out);
                        in_body = false;
                        if !keep {
                            return run;
                        }
                        continue;
                    }
                    if n > 0 {
                        continue;
                    }
                }
                Err(e) => {
                    c.take_output(&mut run.output);
                    c.write_error(&mut run.output, e.status(), e.reason(), e.message());
                    run.end = Err(e.message().to_string());
                    return run;
                }
            }
        }
        if !feed(&mut pending, &mut fed) {
            run.end = Err("eof".into());
            return run;
        }
    }
}

fn whole(wire: &[u8]) -> Run {
    serve(wire, &[], usize::MAX)
}

/// The same run for every single split point and small output steps.
fn assert_split_invariant(wire: &[u8]) -> Run {
    let want = whole(wire);
    for i in 0..=wire.len() {
        let got = serve(wire, &[i], usize::MAX);
        assert_eq!(got, want, "split at {i}");
    }
    let mut bytewise: Vec<usize> = (0..wire.len()).collect();
    bytewise.push(wire.len());
    for max_out in [1, 7] {
        assert_eq!(
            serve(wire, &bytewise, max_out),
            want,
            "bytewise, max_out {max_out}"
        );
    }
    want
}

#[test]
fn a_get_is_one_head_with_no_body_and_an_answer() {
    let wire = get_request(1, true);
    let mut c = FcgiConn::new(Settings::default());
    let (n, h) = c.decode_head(&wire, &Limits::default()).unwrap();
    let h = h.unwrap();
    assert_eq!(n, wire.len());
    assert_eq!(h.method(), b"GET");
    assert_eq!(h.path(), b"/a%20b");
    assert_eq!(h.query(), b"q=1");
    assert_eq!(h.host(), Some(&b"example.com"[..]));
    assert_eq!(h.var(b"REMOTE_ADDR"), Some(&b"192.0.2.9"[..]));
    assert_eq!(h.body(), BodyKind::Empty);
    assert!(h.keep_alive());
    assert!(c.is_done());
    assert_eq!(c.remaining_hint(), Some(0));
    assert_eq!(c.request_id(), 1);

    let mut out = Vec::new();
    c.write_head(
        &mut out,
        b"404 Not Found",
        [(&b"Content-Type"[..], &b"text/plain"[..])],
    );
    c.write_block(&mut out, b"nope");
    assert!(c.write_end(&mut out));
    let head = b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n";
    let mut want = rec(STDOUT, 1, head, 0);
    want.extend(rec(STDOUT, 1, b"nope", 0));
    want.extend(rec(STDOUT, 1, b"", 0));
    want.extend(rec(
        END_REQUEST,
        1,
        &[0, 0, 0, 0, REQUEST_COMPLETE, 0, 0, 0],
        0,
    ));
    assert_eq!(out, want);
    assert_eq!(c.request_id(), 0);
}

#[test]
fn keep_conn_serves_several_requests_and_without_it_the_connection_ends() {
    let mut wire = get_request(1, true);
    wire.extend(get_request(1, true));
    wire.extend(get_request(7, false));
    wire.extend(get_request(1, true));
    let run = assert_split_invariant(&wire);
    assert_eq!(run.heads.len(), 3);
    assert_eq!(
        run.heads.iter().map(|h| h.4).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(run.end, Ok(()));
    // The third answer carries its own id.
    assert!(run.output.ends_with(&rec(
        END_REQUEST,
        7,
        &[0, 0, 0, 0, REQUEST_COMPLETE, 0, 0, 0],
        0
    )));
}

#[test]
fn params_split_across_records_with_long_lengths() {
    let long = vec![b'x'; 300];
    let list: Vec<(&[u8], &[u8])> = vec![
        (b"REQUEST_METHOD", b"GET"),
        (b"REQUEST_URI", b"/"),
        (b"HTTP_X_LONG", &long),
    ];
    let mut wire = begin(1, ROLE_RESPONDER, false);
    wire.extend(params(1, &list, 5));
    wire.extend(rec(STDIN, 1, &[], 0));
    let run = assert_split_invariant(&wire);
    assert_eq!(run.heads[0].2, vec![(b"X-LONG".to_vec(), long)]);
}

#[test]
fn a_body_with_content_length_streams_from_stdin_records() {
    let list: &[(&[u8], &[u8])] = &[
        (b"REQUEST_METHOD", b"POST"),
        (b"REQUEST_URI", b"/up"),
        (b"CONTENT_LENGTH", b"11"),
    ];
    let mut wire = begin(3, ROLE_RESPONDER, true);
    wire.extend(params(3, list, 7));
    wire.extend(rec(STDIN, 3, b"hello", 2));
    // A management query and a record of another id in between.
    wire.extend(rec(GET_VALUES, 0, &pairs(&[(b"FCGI_MPXS_CONNS", b"")]), 0));
    wire.extend(rec(STDIN, 9, b"other", 0));
    wire.extend(rec(DATA, 3, b"filter data", 0));
    wire.extend(rec(STDIN, 3, b" world", 0));
    wire.extend(rec(STDIN, 3, b"", 5));
    let run = assert_split_invariant(&wire);
    assert_eq!(run.bodies, vec![b"hello world".to_vec()]);
    let answer = rec(
        GET_VALUES_RESULT,
        0,
        &pairs(&[(b"FCGI_MPXS_CONNS", b"0")]),
        0,
    );
    assert!(run.output.starts_with(&answer));

    let mut c = FcgiConn::new(Settings::default());
    let (n, h) = c.decode_head(&wire, &Limits::default()).unwrap();
    assert_eq!(h.unwrap().body(), BodyKind::Length(11));
    assert_eq!(c.remaining_hint(), Some(11));
    let mut body = Vec::new();
    let m = c.decode(&wire[n..], &mut body, 3).unwrap();
    assert_eq!(
        (body.as_slice(), c.remaining_hint()),
        (&b"hel"[..], Some(8))
    );
    assert_eq!(c.data_ahead(), 2);
    assert_eq!(c.consume_data(5), 2);
    assert_eq!(c.data_ahead(), 0);
    // The rest, offered from where the direct read left off.
    let rest = &wire[n + m + 2..];
    let k = c.decode(rest, &mut body, usize::MAX).unwrap();
    assert!(c.is_done());
    assert_eq!(body, b"hel world");
    assert_eq!(k, rest.len());
}

#[test]
fn without_content_length_the_body_ends_with_the_empty_stdin() {
    let list: &[(&[u8], &[u8])] = &[(b"REQUEST_METHOD", b"POST"), (b"REQUEST_URI", b"/")];
    let mut wire = begin(1, ROLE_RESPONDER, true);
    wire.extend(params(1, list, 100));
    let head_len = wire.len();
    wire.extend(rec(STDIN, 1, b"abc", 0));
    wire.extend(rec(STDIN, 1, b"", 0));
    wire.extend(get_request(1, false));
    let run = assert_split_invariant(&wire);
    assert_eq!(run.bodies, vec![b"abc".to_vec(), vec![]]);

    let mut c = FcgiConn::new(Settings::default());
    let (n, h) = c.decode_head(&wire, &Limits::default()).unwrap();
    assert_eq!(n, head_len);
    assert_eq!(h.unwrap().body(), BodyKind::Chunked);
    assert_eq!(c.remaining_hint(), None);
    let mut body = Vec::new();
    let m = c.decode(&wire[n..], &mut body, usize::MAX).unwrap();
    assert!(c.is_done());
    assert_eq!(c.remaining_hint(), Some(0));
    // It stops at the body's end: the next request is not consumed.
    assert_eq!(&wire[n + m..], get_request(1, false).as_slice());
    assert_eq!(c.decode(&wire[n + m..], &mut body, usize::MAX), Ok(0));
}

#[test]
fn stdin_must_match_content_length() {
    for (cl, data, msg) in [
        (
            "5",
            &b"abc"[..],
            "fastcgi: FCGI_STDIN shorter than CONTENT_LENGTH",
        ),
        (
            "2",
            b"abc",
            "fastcgi: FCGI_STDIN longer than CONTENT_LENGTH",
        ),
    ] {
        let list: &[(&[u8], &[u8])] = &[
            (b"REQUEST_METHOD", b"POST"),
            (b"REQUEST_URI", b"/"),
            (b"CONTENT_LENGTH", cl.as_bytes()),
        ];
        let mut wire = begin(1, ROLE_RESPONDER, true);
        wire.extend(params(1, list, 100));
        wire.extend(rec(STDIN, 1, data, 0));
        wire.extend(rec(STDIN, 1, b"", 0));
        let run = assert_split_invariant(&wire);
        assert_eq!(run.end, Err(msg.to_string()));
        // The request is answered with a 400 before the connection closes.
        assert!(run.output.windows(12).any(|w| w == b"Status: 400 "));
    }
}

#[test]
fn other_roles_are_refused_with_unknown_role() {
    let mut wire = begin(2, 2, true); // authorizer, keep the connection
    wire.extend(params(2, GET, 100));
    wire.extend(rec(STDIN, 2, b"", 0));
    wire.extend(get_request(1, true));
    let run = assert_split_invariant(&wire);
    assert_eq!(run.heads.len(), 1);
    assert!(run.output.starts_with(&rec(
        END_REQUEST,
        2,
        &[0, 0, 0, 0, UNKNOWN_ROLE, 0, 0, 0],
        0
    )));

    // Without FCGI_KEEP_CONN the connection ends after the refusal.
    let mut wire = begin(2, 3, false); // filter
    wire.extend(get_request(1, true));
    let run = assert_split_invariant(&wire);
    assert!(run.heads.is_empty());
    assert_eq!(
        run.output,
        rec(END_REQUEST, 2, &[0, 0, 0, 0, UNKNOWN_ROLE, 0, 0, 0], 0)
    );
}

#[test]
fn management_records_are_answered() {
    let settings = Settings {
        max_conns: 300,
        max_reqs: 299,
    };
    let query = pairs(&[
        (b"FCGI_MAX_CONNS", b""),
        (b"FCGI_UNHEARD_OF", b""),
        (b"FCGI_MAX_REQS", b""),
        (b"FCGI_MPXS_CONNS", b""),
    ]);
    // One query, fed five bytes at a time, and an unknown type.
    let mut wire = rec(GET_VALUES, 0, &query, 4);
    wire.extend(rec(42, 0, b"whatever", 0));
    let mut c = FcgiConn::new(settings);
    let mut consumed = 0;
    for part in wire.chunks(5) {
        let (n, h) = c.decode_head(part, &Limits::default()).unwrap();
        assert!(h.is_none());
        consumed += n;
    }
    assert_eq!(consumed, wire.len());
    let mut out = Vec::new();
    assert!(c.has_output());
    c.take_output(&mut out);
    assert!(!c.has_output());
    let mut want = rec(
        GET_VALUES_RESULT,
        0,
        &pairs(&[
            (b"FCGI_MAX_CONNS", b"300"),
            (b"FCGI_MAX_REQS", b"299"),
            (b"FCGI_MPXS_CONNS", b"0"),
        ]),
        0,
    );
    want.extend(rec(UNKNOWN_TYPE, 0, &[42, 0, 0, 0, 0, 0, 0, 0], 0));
    assert_eq!(out, want);

    let mut c = FcgiConn::new(settings);
    let big = rec(GET_VALUES, 0, &vec![0; MAX_MANAGEMENT_CONTENT + 1], 0);
    assert!(c.decode_head(&big, &Limits::default()).is_err());
    let mut c = FcgiConn::new(settings);
    let torn = rec(GET_VALUES, 0, &[5, 0, b'a'], 0);
    assert!(c.decode_head(&torn, &Limits::default()).is_err());
}

#[test]
fn unanswered_management_records_are_bounded() {
    let one = rec(99, 0, &[], 0);
    let wire: Vec<u8> = one.repeat(MAX_PENDING_OUTPUT / 16 + 2);
    let mut c = FcgiConn::new(Settings::default());
    assert!(c.decode_head(&wire, &Limits::default()).is_err());
    assert!(c.out.len() <= MAX_PENDING_OUTPUT + 16);
}

#[test]
fn a_second_request_id_is_refused_while_one_is_active() {
    let list: &[(&[u8], &[u8])] = &[
        (b"REQUEST_METHOD", b"PUT"),
        (b"REQUEST_URI", b"/"),
        (b"CONTENT_LENGTH", b"4"),
    ];
    let mut wire = begin(1, ROLE_RESPONDER, true);
    wire.extend(params(1, list, 100));
    wire.extend(rec(STDIN, 1, b"ab", 0));
    // A multiplexing front end starts request 2 in the middle.
    wire.extend(begin(2, ROLE_RESPONDER, true));
    wire.extend(params(2, GET, 100));
    wire.extend(rec(STDIN, 2, b"", 0));
    wire.extend(rec(STDIN, 1, b"cd", 0));
    wire.extend(rec(STDIN, 1, b"", 0));
    let run = assert_split_invariant(&wire);
    assert_eq!(run.heads.len(), 1);
    assert_eq!(run.bodies, vec![b"abcd".to_vec()]);
    assert!(run.output.starts_with(&rec(
        END_REQUEST,
        2,
        &[0, 0, 0, 0, CANT_MPX_CONN, 0, 0, 0],
        0
    )));

    // Also while its params are read.
    let mut wire = begin(1, ROLE_RESPONDER, true);
    wire.extend(begin(2, ROLE_RESPONDER, false));
    wire.extend(params(1, GET, 100));
    wire.extend(rec(STDIN, 1, b"", 0));
    let run = assert_split_invariant(&wire);
    assert_eq!(run.heads.len(), 1);
    assert!(run.output.starts_with(&rec(
        END_REQUEST,
        2,
        &[0, 0, 0, 0, CANT_MPX_CONN, 0, 0, 0],
        0
    )));
}

#[test]
fn records_of_inactive_ids_are_skipped() {
    let mut wire = rec(STDIN, 5, b"stray", 7);
    wire.extend(rec(PARAMS, 5, b"\x01\x01ab", 0));
    wire.extend(rec(ABORT_REQUEST, 5, b"", 0));
    wire.extend(rec(STDOUT, 5, b"odd", 0));
    wire.extend(get_request(1, false));
    let run = assert_split_invariant(&wire);
    assert_eq!(run.heads.len(), 1);
    assert_eq!(run.end, Ok(()));
}

#[test]
fn an_abort_ends_the_request() {
    // During the body: the body reader fails, the answer is END_REQUEST only.
    let list: &[(&[u8], &[u8])] = &[
        (b"REQUEST_METHOD", b"POST"),
        (b"REQUEST_URI", b"/"),
        (b"CONTENT_LENGTH", b"10"),
    ];
    let mut wire = begin(1, ROLE_RESPONDER, true);
    wire.extend(params(1, list, 100));
    let head_len = wire.len();
    wire.extend(rec(STDIN, 1, b"abc", 0));
    wire.extend(rec(ABORT_REQUEST, 1, b"", 0));
    let run = assert_split_invariant(&wire);
    assert_eq!(run.bodies, vec![b"abc".to_vec()]);
    assert_eq!(run.end, Err("the front end aborted the request".into()));
    assert_eq!(
        run.output,
        rec(END_REQUEST, 1, &[0, 0, 0, 0, REQUEST_COMPLETE, 0, 0, 0], 0)
    );
    let mut c = FcgiConn::new(Settings::default());
    let (n, _) = c.decode_head(&wire, &Limits::default()).unwrap();
    assert_eq!(n, head_len);
    let mut b = Vec::new();
    assert_eq!(c.decode(&wire[n..], &mut b, 99), Err(BodyError::Aborted));
    assert_eq!(c.decode(&[], &mut b, 99), Err(BodyError::Aborted));

    // Before the params end: the request never reaches the application.
    let mut wire = begin(1, ROLE_RESPONDER, true);
    wire.extend(rec(PARAMS, 1, &pairs(&GET[..2]), 0));
    wire.extend(rec(ABORT_REQUEST, 1, b"", 0));
    wire.extend(get_request(1, false));
    let run = assert_split_invariant(&wire);
    assert_eq!(run.heads.len(), 1);
    assert!(run.output.starts_with(&rec(
        END_REQUEST,
        1,
        &[0, 0, 0, 0, REQUEST_COMPLETE, 0, 0, 0],
        0
    )));
}

#[test]
fn broken_record_streams_are_refused() {
    let mut bad_version = get_request(1, true);
    bad_version[0] = 2;
    let mut short_begin = rec(BEGIN_REQUEST, 1, &[0, 1, 0], 0);
    short_begin.extend(params(1, GET, 100));
    let mut stdin_early = begin(1, ROLE_RESPONDER, true);
    stdin_early.extend(rec(STDIN, 1, b"", 0));
    let mut begin_twice = begin(1, ROLE_RESPONDER, true);
    begin_twice.extend(begin(1, ROLE_RESPONDER, true));
    let mut stdout_in = begin(1, ROLE_RESPONDER, true);
    stdout_in.extend(rec(STDOUT, 1, b"x", 0));
    let mut params_after = get_request(1, true);
    params_after.truncate(params_after.len() - 8);
    params_after.extend(rec(PARAMS, 1, b"\x01\x01ab", 0));
    let mut torn_pair = begin(1, ROLE_RESPONDER, true);
    torn_pair.extend(rec(PARAMS, 1, &[3, 1, b'a'], 0));
    torn_pair.extend(rec(PARAMS, 1, &[], 0));
    for (name, wire, answered) in [
        ("version", bad_version, false),
        ("short begin", short_begin, false),
        ("stdin early", stdin_early, true),
        ("begin twice", begin_twice, true),
        ("stdout in", stdout_in, true),
        ("params after", params_after, true),
        ("torn pair", torn_pair, true),
    ] {
        let run = assert_split_invariant(&wire);
        assert!(run.end.is_err(), "{name}");
        assert_ne!(run.end, Err("eof".into()), "{name}");
        assert_eq!(
            run.output.windows(12).any(|w| w == b"Status: 400 "),
            answered,
            "{name}: {:?}",
            String::from_utf8_lossy(&run.output)
        );
    }
    // A head is not read before the previous request ended.
    let mut c = FcgiConn::new(Settings::default());
    let (_, h) = c
        .decode_head(&get_request(1, true), &Limits::default())
        .unwrap();
    assert!(h.is_some());
    assert_eq!(
        c.decode_head(b"", &Limits::default()),
        Err(ParseError::BadRequest(
            "fastcgi: the previous request was not ended"
        ))
    );
}

#[test]
fn variables_are_bounded_by_the_limits() {
    let limits = Limits {
        max_head_size: 200,
        max_header_count: 3,
        ..Limits::default()
    };
    let check = |list: &[(&[u8], &[u8])], want: ParseError| {
        let mut wire = begin(1, ROLE_RESPONDER, true);
        wire.extend(params(1, list, 1000));
        let mut c = FcgiConn::new(Settings::default());
        let r = c.decode_head(&wire, &limits);
        assert_eq!(r.map(|(n, _)| n), Err(want));
        let mut out = Vec::new();
        c.write_error(&mut out, want.status(), want.reason(), want.message());
        let status = format!("Status: {} ", want.status());
        assert!(out.windows(status.len()).any(|w| w == status.as_bytes()));
    };
    let big = vec![b'a'; 150];
    check(
        &[(b"HTTP_A", &big), (b"HTTP_B", &big)],
        ParseError::HeadTooLarge,
    );
    let many: Vec<(Vec<u8>, Vec<u8>)> = (0..80)
        .map(|i| (format!("V{i}").into_bytes(), vec![]))
        .collect();
    let many: Vec<(&[u8], &[u8])> = many.iter().map(|(n, v)| (&n[..], &v[..])).collect();
    check(&many, ParseError::TooManyHeaders);
    check(
        &[(b"REQUEST_METHOD", b"GET"), (b"HTTP_X", b"a\0b")],
        ParseError::InvalidHeaderValue,
    );
    check(&[(b"REQUEST_URI", b"/")], ParseError::InvalidMethod);

    // A pair announcing 2 GiB is refused on its lengths alone.
    let mut wire = begin(1, ROLE_RESPONDER, true);
    wire.extend(rec(PARAMS, 1, &[0xff, 0xff, 0xff, 0xff, 1], 0));
    let mut c = FcgiConn::new(Settings::default());
    assert_eq!(c.decode_head(&wire, &limits), Err(ParseError::HeadTooLarge));
    assert!(c.pairs.kept_capacity() < 256);
}

#[test]
fn large_blocks_are_split_into_records() {
    let mut c = FcgiConn::new(Settings::default());
    c.decode_head(&get_request(0x1234, true), &Limits::default())
        .unwrap();
    let data: Vec<u8> = (0..MAX_CONTENT * 2 + 10).map(|i| i as u8).collect();
    let mut out = Vec::new();
    c.write_block(&mut out, &data);
    c.write_block(&mut out, b"");
    let mut want = rec(STDOUT, 0x1234, &data[..MAX_CONTENT], 0);
    want.extend(rec(STDOUT, 0x1234, &data[MAX_CONTENT..MAX_CONTENT * 2], 0));
    want.extend(rec(STDOUT, 0x1234, &data[MAX_CONTENT * 2..], 0));
    assert_eq!(out, want);

    // The same with headers for writev.
    let mut pieces = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        let (h, n) = c.stdout_header(rest.len());
        pieces.extend_from_slice(&h);
        pieces.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    assert_eq!(pieces, want);

    // A head larger than one record.
    let long = vec![b'v'; 70_000];
    let mut out = Vec::new();
    c.write_head(&mut out, b"200 OK", [(&b"X-Big"[..], &long[..])]);
    let mut text = b"Status: 200 OK\r\nX-Big: ".to_vec();
    text.extend_from_slice(&long);
    text.extend_from_slice(b"\r\n\r\n");
    let mut want = rec(STDOUT, 0x1234, &text[..MAX_CONTENT], 0);
    want.extend(rec(STDOUT, 0x1234, &text[MAX_CONTENT..], 0));
    assert_eq!(out, want);
}

#[test]
fn error_answers() {
    let mut c = FcgiConn::new(Settings::default());
    let mut wire = begin(4, ROLE_RESPONDER, true);
    wire.extend(rec(PARAMS, 4, &pairs(&[(b"REQUEST_URI", b"/")]), 0));
    wire.extend(rec(PARAMS, 4, &[], 0));
    let e = c.decode_head(&wire, &Limits::default()).unwrap_err();
    let mut out = Vec::new();
    c.write_error(&mut out, e.status(), "Bad\r\nRequest", "bad\nmethod");
    let body = b"bad method\n";
    let head = format!(
        "Status: 400 Bad  Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut want = rec(STDOUT, 4, head.as_bytes(), 0);
    want.extend(rec(STDOUT, 4, body, 0));
    want.extend(rec(STDOUT, 4, b"", 0));
    want.extend(rec(
        END_REQUEST,
        4,
        &[0, 0, 0, 0, REQUEST_COMPLETE, 0, 0, 0],
        0,
    ));
    assert_eq!(out, want);
    // Every later call fails the same way.
    assert_eq!(c.decode_head(&[], &Limits::default()), Err(e));

    // Nothing to answer before a request began.
    let mut c = FcgiConn::new(Settings::default());
    assert!(c.decode_head(&[9; 8], &Limits::default()).is_err());
    let mut out = Vec::new();
    c.write_error(&mut out, 400, "", "x");
    assert!(out.is_empty());
    assert!(!c.write_end(&mut out));
    assert!(out.is_empty());

    // After the head went out, only the end.
    let mut c = FcgiConn::new(Settings::default());
    c.decode_head(&get_request(1, true), &Limits::default())
        .unwrap();
    let mut out = Vec::new();
    c.write_head(&mut out, b"200 OK", []);
    let n = out.len();
    c.write_error(&mut out, 500, "", "late");
    let mut end = rec(STDOUT, 1, b"", 0);
    end.extend(rec(
        END_REQUEST,
        1,
        &[0, 0, 0, 0, REQUEST_COMPLETE, 0, 0, 0],
        0,
    ));
    assert_eq!(&out[n..], end.as_slice());
}

#[test]
fn an_unread_body_is_drained_after_the_request_ends() {
    let list: &[(&[u8], &[u8])] = &[
        (b"REQUEST_METHOD", b"POST"),
        (b"REQUEST_URI", b"/"),
        (b"CONTENT_LENGTH", b"6"),
    ];
    let mut wire = begin(1, ROLE_RESPONDER, true);
    wire.extend(params(1, list, 100));
    let head_len = wire.len();
    wire.extend(rec(STDIN, 1, b"abcdef", 0));
    wire.extend(rec(STDIN, 1, b"", 0));
    let next = get_request(1, true);
    wire.extend(&next);
    let mut c = FcgiConn::new(Settings::default());
    let (n, _) = c.decode_head(&wire, &Limits::default()).unwrap();
    assert_eq!(n, head_len);
    // Three body bytes read, then the application answers without the rest.
    let mut b = Vec::new();
    let m = c.decode(&wire[n..n + 11], &mut b, 3).unwrap();
    let mut out = Vec::new();
    c.write_head(&mut out, b"200 OK", []);
    assert!(c.write_end(&mut out));
    assert_eq!(c.request_id(), 0);
    // The rest of the body is read before the next request.
    assert!(!c.is_done());
    assert_eq!(c.remaining_hint(), Some(3));
    let mut c2 = FcgiConn::new(Settings::default());
    c2.decode_head(&wire, &Limits::default()).unwrap();
    c2.decode(&wire[n..n + 11], &mut Vec::new(), 3).unwrap();
    c2.write_end(&mut Vec::new());
    assert!(c2.decode_head(&wire[n + m..], &Limits::default()).is_err());
    let mut rest = Vec::new();
    let d = c.decode(&wire[n + m..], &mut rest, usize::MAX).unwrap();
    assert!(c.is_done());
    assert_eq!(rest, b"def");
    let (k, h) = c
        .decode_head(&wire[n + m + d..], &Limits::default())
        .unwrap();
    assert!(h.is_some());
    assert_eq!(n + m + d + k, wire.len());
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic generator mixing valid records and noise.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let templates = [
        get_request(1, true),
        begin(1, ROLE_RESPONDER, true),
        rec(STDIN, 1, b"data", 1),
        rec(PARAMS, 1, &pairs(GET), 0),
        rec(GET_VALUES, 0, &pairs(&[(b"FCGI_MAX_REQS", b"")]), 0),
        rec(ABORT_REQUEST, 1, b"", 0),
    ];
    for _ in 0..3000 {
        let mut wire = Vec::new();
        for _ in 0..(next() % 6) {
            let t = &templates[(next() % templates.len() as u64) as usize];
            wire.extend_from_slice(t);
        }
        for _ in 0..(next() % 4) {
            if !wire.is_empty() {
                let i = (next() % wire.len() as u64) as usize;
                wire[i] = next() as u8;
            }
        }
        let cut = if wire.is_empty() {
            0
        } else {
            (next() % wire.len() as u64) as usize
        };
        let a = serve(&wire, &[cut], (next() % 9) as usize + 1);
        let b = whole(&wire);
        assert_eq!(a, b, "{wire:?}");
    }
}

#[test]
fn a_head_from_field_lines() {
    let mut c = FcgiConn::new(Settings::default());
    c.decode_head(&get_request(2, true), &Limits::default())
        .unwrap();
    let mut out = Vec::new();
    c.write_head_lines(&mut out, b"201 Created", b"X-A: 1\r\nX-B: 2\r\n", Some(12));
    let text = b"Status: 201 Created\r\nX-A: 1\r\nX-B: 2\r\nContent-Length: 12\r\n\r\n";
    assert_eq!(out, rec(STDOUT, 2, text, 0));
    let mut out = Vec::new();
    c.write_head_lines(&mut out, b"200 OK", b"", None);
    assert_eq!(out, rec(STDOUT, 2, b"Status: 200 OK\r\n\r\n", 0));
}
