//! The response side of a connection: building each response as the
//! behaviour says, the malformed frames, and sending DATA within the
//! client's windows and frame size.

use super::{Conn, Transport};
use crate::h2server::frame;
use crate::h2server::{Behaviour, Malformed};

/// A response on its way out.
pub(super) struct Response {
    /// Header blocks to send before the final one (informational).
    informational: Vec<Vec<u8>>,
    head: Vec<u8>,
    head_sent: bool,
    body: Vec<u8>,
    sent: usize,
    pad: Option<u8>,
    /// Largest DATA payload (before the client's frame size).
    chunk: usize,
    /// A trailer block, sent with END_STREAM after the body.
    trailers: Option<Vec<u8>>,
    /// END_STREAM on an empty DATA frame of its own.
    empty_final: bool,
    priority: bool,
}

impl<S: Transport> Conn<'_, S> {
    /// A header block of literal fields, led by the table size update the
    /// client's settings call for.
    fn block(&mut self, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        if let Some(size) = self.table_update.take() {
            frame::hpack_int(&mut b, 0x20, 5, size as usize);
        }
        for (n, v) in fields {
            frame::hpack_literal(&mut b, n, v);
        }
        b
    }

    /// Starts the response to `id` (its request is complete and due).
    pub(super) fn respond(&mut self, id: u32) {
        let opts = &self.shared.opts;
        let body = opts.body.clone();
        let status = opts.status.to_string();
        let length = body.len().to_string();
        let head_fields: [(&[u8], &[u8]); 2] = [
            (b":status", status.as_bytes()),
            (b"content-length", length.as_bytes()),
        ];
        let mut resp = Response {
            informational: Vec::new(),
            head: Vec::new(),
            head_sent: false,
            body,
            sent: 0,
            pad: None,
            chunk: usize::MAX,
            trailers: None,
            empty_final: false,
            priority: false,
        };
        match self.behaviour() {
            Behaviour::Malformed(m) => {
                if !matches!(m, Malformed::UnknownFrameTypes) {
                    self.malformed(id, m);
                    return;
                }
                self.malformed(id, m);
                resp.head = self.block(&head_fields);
            }
            Behaviour::HugeHeaders { bytes } => {
                let mut b = self.block(&head_fields);
                let value = [b'h'; 1000];
                let mut i = 0;
                while b.len() < *bytes {
                    frame::hpack_literal(&mut b, format!("x-huge-{i}").as_bytes(), &value);
                    i += 1;
                }
                resp.head = b;
                self.shared.record(|r| r.mischief += 1);
            }
            Behaviour::HpackBomb { value_len, refs } => {
                let mut b = self.block(&head_fields);
                frame::hpack_literal_indexed(&mut b, b"x-bomb", &vec![b'b'; *value_len]);
                for _ in 0..*refs {
                    frame::hpack_indexed(&mut b, 62);
                }
                resp.head = b;
                self.shared.record(|r| r.mischief += 1);
            }
            Behaviour::Trailers => {
                resp.head = self.block(&head_fields);
                let n = resp.body.len().to_string();
                resp.trailers =
                    Some(self.block(&[(b"x-trailer", b"done"), (b"x-body-bytes", n.as_bytes())]));
                self.shared.record(|r| r.mischief += 1);
            }
            Behaviour::Grpc => {
                let req = self.streams.get(&id).map(|s| s.req);
                let seen = req.and_then(|i| self.shared.record(|r| r.requests.get(i).cloned()));
                match seen.filter(|q| q.header("content-type") == Some("application/grpc")) {
                    Some(q) => {
                        resp.head = self
                            .block(&[(b":status", b"200"), (b"content-type", b"application/grpc")]);
                        let mut framed = vec![0];
                        framed.extend_from_slice(&(resp.body.len() as u32).to_be_bytes());
                        framed.append(&mut resp.body);
                        resp.body = framed;
                        let code: &[u8] = if q.path.ends_with("/Fail") {
                            b"3"
                        } else {
                            b"0"
                        };
                        resp.trailers = Some(self.block(&[(b"grpc-status", code)]));
                    }
                    None => resp.head = self.block(&head_fields),
                }
            }
            Behaviour::Padded { pad } => {
                resp.head = self.block(&head_fields);
                resp.pad = Some(*pad);
                resp.priority = true;
            }
            Behaviour::SplitData { chunk } => {
                resp.head = self.block(&head_fields);
                resp.chunk = (*chunk).max(1);
                resp.empty_final = true;
            }
            Behaviour::Informational { status } => {
                let s = status.to_string();
                resp.informational = vec![self.block(&[(b":status", s.as_bytes())])];
                resp.head = self.block(&head_fields);
                self.shared.record(|r| r.mischief += 1);
            }
            _ => resp.head = self.block(&head_fields),
        }
        if let Some(s) = self.streams.get_mut(&id) {
            if s.head_request {
                resp.body.clear();
            }
            s.resp = Some(resp);
        }
    }

    /// Writes the malformed frame(s) of `m` for request stream `id`; all
    /// but UnknownFrameTypes end the stream here.
    fn malformed(&mut self, id: u32, m: &Malformed) {
        let out = &mut self.out;
        let max = self.peer_max_frame;
        match m {
            Malformed::BadPingLength => frame::write(out, frame::PING, 0, 0, &[1; 6]),
            Malformed::BadWindowUpdateLength => {
                frame::write(out, frame::WINDOW_UPDATE, 0, 0, &[0, 0, 1])
            }
            Malformed::DataOnStreamZero => frame::write(out, frame::DATA, 0, 0, b"hello"),
            Malformed::UnknownFrameTypes => {
                frame::write(out, 0xfa, 0xff, 0, b"ignore me");
                frame::write(out, 0xfa, 0, id, b"and me");
            }
            Malformed::OversizedFrame => {
                let block = frame::block(&[(b":status", b"200")]);
                frame::headers(out, id, &block, false, max, None, false);
                frame::data(out, id, &vec![b'o'; max + 1], true, None);
            }
            Malformed::HeadersOnEvenStream => {
                let block = frame::block(&[(b":status", b"200")]);
                frame::headers(out, 2, &block, true, max, None, false);
            }
            Malformed::InvalidHpack => {
                let mut block = Vec::new();
                frame::hpack_indexed(&mut block, 200);
                frame::headers(out, id, &block, true, max, None, false);
            }
            Malformed::WindowOverflow => {
                frame::window_update(out, 0, 0x7fff_ffff);
                frame::window_update(out, 0, 0x7fff_ffff);
            }
            Malformed::PushPromise => {
                let mut p = 2u32.to_be_bytes().to_vec();
                p.extend_from_slice(&frame::block(&[
                    (b":method", b"GET"),
                    (b":path", b"/pushed"),
                    (b":scheme", b"http"),
                    (b":authority", b"localhost"),
                ]));
                frame::write(out, frame::PUSH_PROMISE, frame::END_HEADERS, id, &p);
            }
            Malformed::ContinuationWithoutHeaders => {
                let block = frame::block(&[(b":status", b"200")]);
                frame::write(out, frame::CONTINUATION, frame::END_HEADERS, id, &block);
            }
            Malformed::Raw {
                kind,
                flags,
                stream,
                payload,
            } => frame::write(out, *kind, *flags, stream.unwrap_or(id), payload),
        }
        self.shared.record(|r| r.mischief += 1);
        if !matches!(m, Malformed::UnknownFrameTypes) {
            self.streams.remove(&id);
        }
    }

    /// Sends what the responses have ready, within the client's windows
    /// and frame size.
    pub(super) fn pump(&mut self) {
        let ids: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.resp.is_some())
            .map(|(&id, _)| id)
            .collect();
        let max = self.peer_max_frame;
        let mut finished = Vec::new();
        let mut waits = 0u64;
        let mut continuations = 0;
        for id in ids {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            let Some(r) = s.resp.as_mut() else {
                continue;
            };
            if !r.head_sent {
                for block in r.informational.drain(..) {
                    continuations +=
                        frame::headers(&mut self.out, id, &block, false, max, None, false) - 1;
                }
                let end = r.body.is_empty() && r.trailers.is_none() && !r.empty_final;
                continuations +=
                    frame::headers(&mut self.out, id, &r.head, end, max, r.pad, r.priority) - 1;
                r.head_sent = true;
                if end {
                    finished.push(id);
                    continue;
                }
            }
            while r.sent < r.body.len() {
                let overhead = r.pad.map_or(0, |p| 1 + p as usize);
                let window = self.conn_send_window.min(s.send_window).max(0) as usize;
                let room = window
                    .min(max)
                    .saturating_sub(overhead)
                    .min(r.chunk)
                    .min(r.body.len() - r.sent);
                if room == 0 {
                    if !s.waiting {
                        s.waiting = true;
                        waits += 1;
                    }
                    break;
                }
                let last = r.sent + room == r.body.len();
                let end = last && r.trailers.is_none() && !r.empty_final;
                frame::data(
                    &mut self.out,
                    id,
                    &r.body[r.sent..r.sent + room],
                    end,
                    r.pad,
                );
                let cost = frame::data_cost(room, r.pad) as i64;
                self.conn_send_window -= cost;
                s.send_window -= cost;
                r.sent += room;
            }
            if r.sent < r.body.len() {
                continue;
            }
            if let Some(t) = r.trailers.take() {
                continuations += frame::headers(&mut self.out, id, &t, true, max, None, false) - 1;
            } else if r.empty_final {
                frame::data(&mut self.out, id, &[], true, None);
            }
            finished.push(id);
        }
        for id in &finished {
            if let Some(s) = self.streams.remove(id) {
                self.shared.record(|r| {
                    r.responses += 1;
                    r.requests[s.req].responded = true;
                });
            }
        }
        if waits > 0 || continuations > 0 {
            self.shared.record(|r| {
                r.window_waits += waits;
                r.continuations_sent += continuations as u64;
            });
        }
    }
}
