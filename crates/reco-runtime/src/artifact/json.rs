//! The manifest's JSON layout: objects one key a line (as `serde_json`'s pretty printer),
//! arrays of numbers and strings on one line. A vocabulary of 21k place ids is then one line
//! of about 6 bytes an id, not 21k lines of 17 (ten spaces of indent, the id, a comma): on a
//! check-in log the pretty manifest outweighed the INT8 model it describes.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::Formatter;

use crate::error::{Error, Result};

/// `value` as JSON in this layout (no trailing newline, like `serde_json::to_vec_pretty`).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Layout::default());
    value.serialize(&mut ser).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(out)
}

/// One open object or array.
struct Frame {
    array: bool,
    has_value: bool,
    /// An array that holds objects: its `]` goes on its own line.
    multiline: bool,
}

/// The formatter: objects indented by two spaces a level, arrays inline unless they hold
/// objects (each of which then starts a line).
#[derive(Default)]
struct Layout {
    stack: Vec<Frame>,
}

impl Layout {
    fn newline<W: ?Sized + Write>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(b"\n")?;
        for _ in 0..self.stack.len() {
            w.write_all(b"  ")?;
        }
        Ok(())
    }

    fn mark_value(&mut self) {
        if let Some(f) = self.stack.last_mut() {
            f.has_value = true;
        }
    }
}

impl Formatter for Layout {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.stack.push(Frame { array: true, has_value: false, multiline: false });
        w.write_all(b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        let multiline = self.stack.pop().is_some_and(|f| f.multiline);
        if multiline {
            self.newline(w)?;
        }
        w.write_all(b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b",") }
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.mark_value();
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if let Some(f) = self.stack.last_mut().filter(|f| f.array) {
            f.multiline = true;
            self.newline(w)?;
        }
        self.stack.push(Frame { array: false, has_value: false, multiline: false });
        w.write_all(b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        let has_value = self.stack.pop().is_some_and(|f| f.has_value);
        if has_value {
            self.newline(w)?;
        }
        w.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        self.newline(w)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.mark_value();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn text(v: &serde_json::Value) -> String {
        String::from_utf8(to_vec(v).unwrap()).unwrap()
    }

    #[test]
    fn arrays_of_scalars_take_one_line_and_objects_one_key_a_line() {
        let v = json!({"a": [1, 2, 3], "b": {"c": "x", "d": []}, "e": {}, "f": [[1.5, 2.0], ["s"]]});
        let want = "{\n  \"a\": [1,2,3],\n  \"b\": {\n    \"c\": \"x\",\n    \"d\": []\n  },\n  \"e\": {},\n  \"f\": [[1.5,2.0],[\"s\"]]\n}";
        assert_eq!(text(&v), want);
    }

    #[test]
    fn objects_inside_arrays_start_their_own_lines() {
        let v = json!({"cols": [{"n": 1}, {"n": 2}]});
        let want = "{\n  \"cols\": [\n    {\n      \"n\": 1\n    },\n    {\n      \"n\": 2\n    }\n  ]\n}";
        assert_eq!(text(&v), want);
    }

    #[test]
    fn reads_back_as_the_same_value_and_is_smaller_than_pretty() {
        let ids: Vec<i64> = (0..500).map(|i| 1_000_000 + 7 * i).collect();
        let v = json!({"feature_spec": {"categorical": [{"name": "user_id", "vocabulary": ids, "w": -0.1}]}});
        let ours = to_vec(&v).unwrap();
        let back: serde_json::Value = serde_json::from_slice(&ours).unwrap();
        assert_eq!(back, v);
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        // 500 ids of 7 digits: 8 bytes each here, 7 + 2 + 10 spaces of indent each pretty.
        assert!(ours.len() < 4_200 && pretty.len() > 9_000, "{} vs {}", ours.len(), pretty.len());
    }
}
