//! The read side of [`Connection`]: frames arrive piece by piece, are
//! checked against RFC 9113 as they come, and turn into [`Event`]s and
//! the frames that answer them (SETTINGS ACK, PING ACK, WINDOW_UPDATE,
//! RST_STREAM).

use super::{ConnError, Connection, Continuing, Event, MAX_PENDING_OUTPUT, Read};
use crate::http::h2::H2Stats;
use crate::http::h2::frame::{self, Header};

impl Connection {
    /// Takes what arrived. Events go to `events` in the order they
    /// happened; on a connection error the events before it stand, and
    /// the connection must be closed.
    pub fn read(
        &mut self,
        mut data: &[u8],
        events: &mut Vec<Event>,
        st: &mut H2Stats,
    ) -> Result<(), ConnError> {
        while !data.is_empty() {
            match self.read {
                Read::Head => {
                    let n = (frame::HEADER_LEN - self.head_len).min(data.len());
                    self.head[self.head_len..self.head_len + n].copy_from_slice(&data[..n]);
                    self.head_len += n;
                    data = &data[n..];
                    if self.head_len == frame::HEADER_LEN {
                        self.head_len = 0;
                        if !self.got_settings && self.head.starts_with(b"HTTP/1") {
                            return Err(ConnError::Http1);
                        }
                        let hdr = Header::parse(&self.head);
                        st.frames_in += 1;
                        self.begin(hdr, events, st)?;
                    }
                }
                Read::Data {
                    hdr,
                    left,
                    pad,
                    pad_byte,
                } => {
                    let (mut left, mut pad) = (left, pad);
                    if pad_byte {
                        if data[0] as u32 >= hdr.len {
                            return Err(ConnError::Protocol("DATA padding longer than the frame"));
                        }
                        pad = data[0] as u32;
                        data = &data[1..];
                        left -= 1;
                    }
                    let n = (left as usize).min(data.len());
                    if self.keep_bodies {
                        let content = n.min(left.saturating_sub(pad) as usize);
                        if let Some(i) = self.slot_of(hdr.stream) {
                            self.streams[i].kept.extend_from_slice(&data[..content]);
                        }
                    }
                    data = &data[n..];
                    left -= n as u32;
                    if left == 0 {
                        self.read = Read::Head;
                        self.data_done(hdr, events, st);
                    } else {
                        self.read = Read::Data {
                            hdr,
                            left,
                            pad,
                            pad_byte: false,
                        };
                    }
                }
                Read::Payload { hdr } => {
                    let len = hdr.len as usize;
                    if self.payload.is_empty() && data.len() >= len {
                        // Whole in the caller's bytes: no copy.
                        self.read = Read::Head;
                        self.frame(hdr, &data[..len], events, st)?;
                        data = &data[len..];
                    } else {
                        let n = (len - self.payload.len()).min(data.len());
                        self.payload.extend_from_slice(&data[..n]);
                        data = &data[n..];
                        if self.payload.len() == len {
                            self.read = Read::Head;
                            let payload = std::mem::take(&mut self.payload);
                            let r = self.frame(hdr, &payload, events, st);
                            self.payload = payload;
                            self.payload.clear();
                            r?;
                        }
                    }
                }
            }
        }
        if self.out.len() > MAX_PENDING_OUTPUT {
            return Err(ConnError::Flood);
        }
        Ok(())
    }

    /// A frame header arrived: checks what can be checked before its
    /// payload, and decides how to read it.
    fn begin(
        &mut self,
        hdr: Header,
        events: &mut Vec<Event>,
        st: &mut H2Stats,
    ) -> Result<(), ConnError> {
        // We never raise SETTINGS_MAX_FRAME_SIZE.
        if hdr.len > frame::DEFAULT_MAX_FRAME {
            return Err(ConnError::FrameSize("larger than SETTINGS_MAX_FRAME_SIZE"));
        }
        if !self.got_settings && hdr.kind != frame::SETTINGS {
            return Err(ConnError::Protocol(
                "the server's first frame is not SETTINGS",
            ));
        }
        if let Some(c) = self.continuing
            && (hdr.kind != frame::CONTINUATION || hdr.stream != c.stream)
        {
            return Err(ConnError::Protocol("a header block interrupted"));
        }
        if hdr.kind != frame::DATA {
            self.read = Read::Payload { hdr };
            if hdr.len == 0 {
                self.read = Read::Head;
                self.frame(hdr, &[], events, st)?;
            }
            return Ok(());
        }
        if hdr.stream == 0 {
            return Err(ConnError::Protocol("DATA on stream 0"));
        }
        if hdr.has(frame::PADDED) && hdr.len == 0 {
            return Err(ConnError::FrameSize("padded DATA without its pad length"));
        }
        // The whole frame counts against both windows, padding included.
        self.recv_window -= hdr.len as i64;
        if self.recv_window < 0 {
            return Err(ConnError::FlowControl("DATA beyond the connection window"));
        }
        self.recv_unacked += hdr.len;
        if self.recv_unacked >= self.local.conn_window / 2 && self.recv_unacked > 0 {
            frame::window_update(&mut self.out, 0, self.recv_unacked);
            st.frames_out += 1;
            self.recv_window += self.recv_unacked as i64;
            self.recv_unacked = 0;
        }
        match self.slot_of(hdr.stream) {
            Some(i) => {
                let s = &mut self.streams[i];
                if s.status == 0 {
                    // DATA before the final HEADERS.
                    self.malformed(i, events, st);
                } else {
                    s.received += hdr.len as u64;
                    s.recv_unacked += hdr.len;
                    if s.recv_unacked > self.local.stream_window {
                        return Err(ConnError::FlowControl("DATA beyond the stream window"));
                    }
                    if !hdr.has(frame::END_STREAM)
                        && s.recv_unacked >= self.local.stream_window / 2
                        && s.recv_unacked > 0
                    {
                        frame::window_update(&mut self.out, s.id, s.recv_unacked);
                        st.frames_out += 1;
                        s.recv_unacked = 0;
                    }
                }
            }
            None if self.is_idle(hdr.stream) => {
                return Err(ConnError::Protocol("DATA on a stream never opened"));
            }
            // A stream we already closed (reset or timed out): ignored,
            // but it counted against the connection window above.
            None => {}
        }
        if hdr.len == 0 {
            self.data_done(hdr, events, st);
        } else {
            self.read = Read::Data {
                hdr,
                left: hdr.len,
                pad: 0,
                pad_byte: hdr.has(frame::PADDED),
            };
        }
        Ok(())
    }

    /// A DATA frame was read to its end.
    fn data_done(&mut self, hdr: Header, events: &mut Vec<Event>, st: &mut H2Stats) {
        if let Some(i) = self.slot_of(hdr.stream) {
            self.answered(i, events);
            if hdr.has(frame::END_STREAM) {
                self.complete(i, events, st);
            }
        }
    }

    fn answered(&mut self, i: usize, events: &mut Vec<Event>) {
        let s = &mut self.streams[i];
        if !s.answered {
            s.answered = true;
            events.push(Event::FirstByte { slot: i as u32 });
        }
    }

    /// The server ended the slot's stream.
    fn complete(&mut self, i: usize, events: &mut Vec<Event>, st: &mut H2Stats) {
        let s = &self.streams[i];
        let (status, grpc) = (s.status, s.grpc);
        if status == 0 {
            self.malformed(i, events, st);
            return;
        }
        if s.stalled() {
            // Answered before we finished the body: the rest is not wanted.
            frame::rst_stream(&mut self.out, s.id, frame::CANCEL);
            st.frames_out += 1;
        }
        self.close(i);
        events.push(Event::Complete {
            slot: i as u32,
            status,
            grpc,
        });
    }

    /// The response on slot `i` is not a valid HTTP/2 message.
    fn malformed(&mut self, i: usize, events: &mut Vec<Event>, st: &mut H2Stats) {
        frame::rst_stream(&mut self.out, self.streams[i].id, frame::PROTOCOL_ERROR);
        st.frames_out += 1;
        self.close(i);
        events.push(Event::Malformed { slot: i as u32 });
    }

    /// A whole frame other than DATA.
    fn frame(
        &mut self,
        hdr: Header,
        payload: &[u8],
        events: &mut Vec<Event>,
        st: &mut H2Stats,
    ) -> Result<(), ConnError> {
        match hdr.kind {
            frame::HEADERS => self.headers(hdr, payload, events, st),
            frame::CONTINUATION => self.continuation(hdr, payload, events, st),
            frame::SETTINGS => self.settings(hdr, payload, events, st),
            frame::WINDOW_UPDATE => self.window_update(hdr, payload, st),
            frame::RST_STREAM => {
                if hdr.stream == 0 {
                    return Err(ConnError::Protocol("RST_STREAM on stream 0"));
                }
                let code = u32::from_be_bytes(
                    payload
                        .try_into()
                        .map_err(|_| ConnError::FrameSize("RST_STREAM is not 4 bytes"))?,
                );
                match self.slot_of(hdr.stream) {
                    Some(i) => {
                        st.count_reset(code);
                        self.close(i);
                        events.push(if code == frame::REFUSED_STREAM {
                            Event::Unprocessed { slot: i as u32 }
                        } else {
                            Event::Reset {
                                slot: i as u32,
                                code,
                            }
                        });
                    }
                    None if self.is_idle(hdr.stream) => {
                        return Err(ConnError::Protocol("RST_STREAM on a stream never opened"));
                    }
                    None => {}
                }
                Ok(())
            }
            frame::PING => {
                if hdr.stream != 0 {
                    return Err(ConnError::Protocol("PING on a stream"));
                }
                let data: &[u8; 8] = payload
                    .try_into()
                    .map_err(|_| ConnError::FrameSize("PING is not 8 bytes"))?;
                if !hdr.has(frame::ACK) {
                    st.pings += 1;
                    frame::ping(&mut self.out, true, data);
                    st.frames_out += 1;
                }
                Ok(())
            }
            frame::GOAWAY => {
                if hdr.stream != 0 {
                    return Err(ConnError::Protocol("GOAWAY on a stream"));
                }
                if payload.len() < 8 {
                    return Err(ConnError::FrameSize("GOAWAY shorter than 8 bytes"));
                }
                let last = u32::from_be_bytes(payload[..4].try_into().unwrap_or_default())
                    & frame::MAX_WINDOW;
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap_or_default());
                st.goaways += 1;
                self.goaway = Some(self.goaway.map_or(last, |l| l.min(last)));
                for i in 0..self.streams.len() {
                    if self.streams[i].id > last {
                        self.close(i);
                        events.push(Event::Unprocessed { slot: i as u32 });
                    }
                }
                events.push(Event::GoAway { code });
                Ok(())
            }
            frame::PUSH_PROMISE => Err(ConnError::Protocol("PUSH_PROMISE with push disabled")),
            frame::PRIORITY => {
                if hdr.stream == 0 {
                    return Err(ConnError::Protocol("PRIORITY on stream 0"));
                }
                if payload.len() != 5 {
                    return Err(ConnError::FrameSize("PRIORITY is not 5 bytes"));
                }
                Ok(())
            }
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    fn headers(
        &mut self,
        hdr: Header,
        payload: &[u8],
        events: &mut Vec<Event>,
        st: &mut H2Stats,
    ) -> Result<(), ConnError> {
        if hdr.stream == 0 {
            return Err(ConnError::Protocol("HEADERS on stream 0"));
        }
        if self.is_idle(hdr.stream) {
            return Err(ConnError::Protocol("HEADERS on a stream never opened"));
        }
        let mut p = payload;
        let mut pad = 0;
        if hdr.has(frame::PADDED) {
            let (&n, rest) = p.split_first().ok_or(ConnError::FrameSize(
                "padded HEADERS without its pad length",
            ))?;
            pad = n as usize;
            p = rest;
        }
        if hdr.has(frame::PRIORITY_FLAG) {
            p = p
                .get(5..)
                .ok_or(ConnError::FrameSize("HEADERS shorter than its priority"))?;
        }
        if pad > p.len() {
            return Err(ConnError::Protocol("HEADERS padding longer than the frame"));
        }
        let fragment = &p[..p.len() - pad];
        let end_stream = hdr.has(frame::END_STREAM);
        if hdr.has(frame::END_HEADERS) {
            return self.header_block(hdr.stream, fragment, end_stream, events, st);
        }
        self.block.clear();
        self.block.extend_from_slice(fragment);
        self.continuing = Some(Continuing {
            stream: hdr.stream,
            end_stream,
        });
        self.check_block_size()
    }

    fn continuation(
        &mut self,
        hdr: Header,
        payload: &[u8],
        events: &mut Vec<Event>,
        st: &mut H2Stats,
    ) -> Result<(), ConnError> {
        let Some(c) = self.continuing else {
            return Err(ConnError::Protocol("CONTINUATION without HEADERS"));
        };
        self.block.extend_from_slice(payload);
        self.check_block_size()?;
        if hdr.has(frame::END_HEADERS) {
            self.continuing = None;
            let block = std::mem::take(&mut self.block);
            let r = self.header_block(c.stream, &block, c.end_stream, events, st);
            self.block = block;
            self.block.clear();
            r?;
        }
        Ok(())
    }

    /// A block growing past twice the header list limit (on the wire,
    /// before decoding) is refused without waiting for its end.
    fn check_block_size(&self) -> Result<(), ConnError> {
        let limit = 2 * self.local.max_header_list as usize + frame::DEFAULT_MAX_FRAME as usize;
        if self.block.len() > limit {
            return Err(ConnError::HeaderList);
        }
        Ok(())
    }

    /// A whole header block for `id`: decoded (always, to keep HPACK's
    /// table in step), then judged as the stream's response head or
    /// trailers.
    fn header_block(
        &mut self,
        id: u32,
        block: &[u8],
        end_stream: bool,
        events: &mut Vec<Event>,
        st: &mut H2Stats,
    ) -> Result<(), ConnError> {
        // gRPC's status travels in a header field; it is read whatever
        // the run, a compare of names that are rarely 11 bytes long.
        let mut grpc = None;
        let buf = &mut self.grpc_value;
        let decoded = self.decoder.decode(block, |name, value| {
            if name == b"grpc-status" {
                grpc = value.bytes(buf).ok().and_then(crate::grpc::status::parse);
            }
        })?;
        let Some(i) = self.slot_of(id) else {
            return Ok(());
        };
        self.answered(i, events);
        let s = &mut self.streams[i];
        if grpc.is_some() {
            s.grpc = grpc;
        }
        if s.status != 0 {
            // Trailers: they end the stream and carry no status.
            if !end_stream || decoded.status.is_some() {
                self.malformed(i, events, st);
            } else {
                self.complete(i, events, st);
            }
            return Ok(());
        }
        match decoded.status {
            // 101 is not allowed in HTTP/2 (RFC 9113 §8.6).
            Some(101) | None => self.malformed(i, events, st),
            Some(100..=199) if end_stream => self.malformed(i, events, st),
            Some(100..=199) => {}
            Some(status) => {
                s.status = status;
                if end_stream {
                    self.complete(i, events, st);
                }
            }
        }
        Ok(())
    }

    fn settings(
        &mut self,
        hdr: Header,
        payload: &[u8],
        events: &mut Vec<Event>,
        st: &mut H2Stats,
    ) -> Result<(), ConnError> {
        if hdr.stream != 0 {
            return Err(ConnError::Protocol("SETTINGS on a stream"));
        }
        if hdr.has(frame::ACK) {
            if !payload.is_empty() {
                return Err(ConnError::FrameSize("SETTINGS ACK with a payload"));
            }
            return Ok(());
        }
        if !payload.len().is_multiple_of(6) {
            return Err(ConnError::FrameSize("SETTINGS not a multiple of 6 bytes"));
        }
        for s in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                frame::SETTINGS_HEADER_TABLE_SIZE => {
                    self.encoder.set_peer_table_size(value as usize);
                }
                frame::SETTINGS_ENABLE_PUSH if value > 1 => {
                    return Err(ConnError::Protocol("SETTINGS_ENABLE_PUSH above 1"));
                }
                frame::SETTINGS_ENABLE_PUSH if value == 1 => {
                    return Err(ConnError::Protocol("a server enabled push"));
                }
                frame::SETTINGS_MAX_CONCURRENT_STREAMS => {
                    self.peer_max_streams = Some(value);
                    st.saw_max_streams(value);
                }
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    if value > frame::MAX_WINDOW {
                        return Err(ConnError::FlowControl(
                            "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1",
                        ));
                    }
                    let delta = value as i64 - self.peer_initial_window;
                    self.peer_initial_window = value as i64;
                    for s in self.streams.iter_mut().filter(|s| s.id != 0) {
                        s.send_window += delta;
                        if s.send_window > frame::MAX_WINDOW as i64 {
                            return Err(ConnError::FlowControl("a stream window above 2^31-1"));
                        }
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME..=frame::MAX_MAX_FRAME).contains(&value) {
                        return Err(ConnError::Protocol("SETTINGS_MAX_FRAME_SIZE out of range"));
                    }
                    self.peer_max_frame = value as usize;
                }
                // MAX_HEADER_LIST_SIZE is advisory, and unknown settings
                // are ignored (RFC 9113 §6.5.2).
                _ => {}
            }
        }
        self.got_settings = true;
        frame::settings_ack(&mut self.out);
        st.frames_out += 1;
        events.push(Event::Settings);
        self.resume(st);
        Ok(())
    }

    fn window_update(
        &mut self,
        hdr: Header,
        payload: &[u8],
        st: &mut H2Stats,
    ) -> Result<(), ConnError> {
        let inc = u32::from_be_bytes(
            payload
                .try_into()
                .map_err(|_| ConnError::FrameSize("WINDOW_UPDATE is not 4 bytes"))?,
        ) & frame::MAX_WINDOW;
        if hdr.stream == 0 {
            if inc == 0 {
                return Err(ConnError::Protocol("WINDOW_UPDATE of 0"));
            }
            self.send_window += inc as i64;
            if self.send_window > frame::MAX_WINDOW as i64 {
                return Err(ConnError::FlowControl("the connection window above 2^31-1"));
            }
            self.resume(st);
            return Ok(());
        }
        match self.slot_of(hdr.stream) {
            Some(i) => {
                let s = &mut self.streams[i];
                s.send_window += inc as i64;
                if inc == 0 || s.send_window > frame::MAX_WINDOW as i64 {
                    // A stream error; the request on it is lost either way,
                    // so the connection's rules apply.
                    return Err(ConnError::FlowControl("a bad stream WINDOW_UPDATE"));
                }
                if s.stalled() {
                    self.resume(st);
                }
                Ok(())
            }
            None if self.is_idle(hdr.stream) => Err(ConnError::Protocol(
                "WINDOW_UPDATE on a stream never opened",
            )),
            None => Ok(()),
        }
    }
}
