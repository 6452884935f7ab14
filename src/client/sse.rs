//! A minimal incremental parser for the SSE frames signoff sends, used for the
//! bounded per-intent and per-agent streams.

/// One complete event. Comments (`: ping`) are not reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseFrame {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds bytes as they arrive; returns the events they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseFrame> {
        self.pending.extend_from_slice(chunk);
        let mut frames = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if let Some(frame) = self.finish() {
                    frames.push(frame);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
            match field {
                "id" => self.id = Some(value),
                "event" => self.event = Some(value),
                "data" => self.data.push(value),
                _ => {}
            }
        }
        frames
    }

    fn finish(&mut self) -> Option<SseFrame> {
        let event = self.event.take();
        let id = self.id.take();
        if self.data.is_empty() && event.is_none() {
            return None;
        }
        let data = std::mem::take(&mut self.data).join("\n");
        Some(SseFrame {
            id,
            event: event.unwrap_or_else(|| "message".to_string()),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_chunks_are_reassembled() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"id: 3\nevent: intent.comp").is_empty());
        assert!(parser.push(b"leted\ndata: {\"a\":1}\n").is_empty());
        let frames = parser.push(b"\n: ping\n\nevent: stream.timeout\r\ndata: {}\r\n\r\n");
        assert_eq!(
            frames,
            vec![
                SseFrame {
                    id: Some("3".into()),
                    event: "intent.completed".into(),
                    data: "{\"a\":1}".into()
                },
                SseFrame {
                    id: None,
                    event: "stream.timeout".into(),
                    data: "{}".into()
                },
            ]
        );
    }
}
