//! Fixed-width records on disk for `prepare`'s streamed path: written once in order, read
//! back in the same order. Native-endian, never kept: the files live in the staging directory
//! of one run and are removed before it commits.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use reco_runtime::error::{Error, IoContext, Result};

/// A record of a fixed number of bytes.
pub trait Record: Sized {
    /// Bytes per record.
    const BYTES: usize;
    /// Appends the record's bytes to `out`.
    fn put(&self, out: &mut Vec<u8>);
    /// The record in `b` (exactly [`Record::BYTES`] long).
    fn get(b: &mut Bytes<'_>) -> Self;
}

/// A cursor over one record's bytes.
pub struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.0[..N]);
        self.0 = &self.0[N..];
        a
    }

    /// The next `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_ne_bytes(self.take())
    }

    /// The next `i64`.
    pub fn i64(&mut self) -> i64 {
        i64::from_ne_bytes(self.take())
    }

    /// The next `f32`, bit for bit.
    pub fn f32(&mut self) -> f32 {
        f32::from_ne_bytes(self.take())
    }

    /// The next `f64`, bit for bit.
    pub fn f64(&mut self) -> f64 {
        f64::from_ne_bytes(self.take())
    }
}

/// Appends records to a file.
pub struct Writer<R> {
    out: BufWriter<File>,
    path: PathBuf,
    buf: Vec<u8>,
    records: u64,
    kind: PhantomData<R>,
}

impl<R: Record> Writer<R> {
    /// Creates `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let out = BufWriter::with_capacity(1 << 15, File::create(path).at(path)?);
        Ok(Self { out, path: path.to_path_buf(), buf: Vec::with_capacity(R::BYTES), records: 0, kind: PhantomData })
    }

    /// Appends `r`.
    pub fn push(&mut self, r: &R) -> Result<()> {
        self.buf.clear();
        r.put(&mut self.buf);
        self.records += 1;
        self.out.write_all(&self.buf).at(&self.path)
    }

    /// Flushes the file; returns its path and the records written.
    pub fn finish(mut self) -> Result<(PathBuf, u64)> {
        self.out.flush().at(&self.path)?;
        Ok((self.path, self.records))
    }
}

/// Reads a file's records in order.
pub struct Reader<R> {
    input: BufReader<File>,
    path: PathBuf,
    buf: Vec<u8>,
    kind: PhantomData<R>,
}

impl<R: Record> Reader<R> {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let input = BufReader::with_capacity(1 << 15, File::open(path).at(path)?);
        Ok(Self { input, path: path.to_path_buf(), buf: vec![0; R::BYTES], kind: PhantomData })
    }

    /// Moves to record `index`.
    pub fn seek(&mut self, index: u64) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        self.input.seek(SeekFrom::Start(index * R::BYTES as u64)).at(&self.path)?;
        Ok(())
    }

    /// The next record; reading past the last one is an internal error (the caller knows how
    /// many there are).
    pub fn next_record(&mut self) -> Result<R> {
        self.input
            .read_exact(&mut self.buf)
            .map_err(|e| Error::Internal(format!("{}: spill file ended early ({e})", self.path.display())))?;
        Ok(R::get(&mut Bytes(&self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Pair(u32, f64);

    impl Record for Pair {
        const BYTES: usize = 12;
        fn put(&self, out: &mut Vec<u8>) {
            out.extend(self.0.to_ne_bytes());
            out.extend(self.1.to_ne_bytes());
        }
        fn get(b: &mut Bytes<'_>) -> Self {
            Pair(b.u32(), b.f64())
        }
    }

    #[test]
    fn records_come_back_in_order_bit_for_bit_and_reading_past_the_end_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.bin");
        let mut w = Writer::<Pair>::create(&path).unwrap();
        let nan = f64::from_bits(0x7ff8_0000_0000_1234);
        let items = [Pair(7, 1.5), Pair(u32::MAX, nan), Pair(0, -0.0)];
        for p in &items {
            w.push(p).unwrap();
        }
        assert_eq!(w.finish().unwrap().1, 3);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 36);
        let mut r = Reader::<Pair>::open(&path).unwrap();
        for p in &items {
            let got = r.next_record().unwrap();
            assert_eq!((got.0, got.1.to_bits()), (p.0, p.1.to_bits()));
        }
        assert!(r.next_record().is_err());
    }
}
