//! Response compression by `Accept-Encoding` (the seed's serializer): brotli when accepted,
//! else gzip, else none. `q=0` excludes an encoding.

use std::io::Write;

use hyper::header::HeaderValue;

/// A content coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No compression.
    Identity,
    /// gzip (flate2).
    Gzip,
    /// brotli.
    Brotli,
}

impl Encoding {
    /// The best coding the `Accept-Encoding` header allows.
    pub fn negotiate(header: Option<&HeaderValue>) -> Self {
        let Some(text) = header.and_then(|h| h.to_str().ok()) else {
            return Self::Identity;
        };
        // (coding, q) pairs; an explicit entry for a coding wins over `*`.
        let entries: Vec<(&str, f32)> = text
            .split(',')
            .map(|part| {
                let mut it = part.split(';');
                let coding = it.next().unwrap_or("").trim();
                let q = it.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
                (coding, q)
            })
            .collect();
        let accepted = |name: &str| {
            let q_of = |c: &str| entries.iter().find(|(e, _)| e.eq_ignore_ascii_case(c)).map(|&(_, q)| q);
            q_of(name).or_else(|| q_of("*")).is_some_and(|q| q > 0.0)
        };
        if accepted("br") {
            Self::Brotli
        } else if accepted("gzip") {
            Self::Gzip
        } else {
            Self::Identity
        }
    }

    /// The `Content-Encoding` value, none for identity.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }
}

/// Compresses `body`; on an encoder error the body goes out uncompressed (and says so).
pub fn compress(body: Vec<u8>, enc: Encoding) -> (Vec<u8>, Encoding) {
    let out = match enc {
        Encoding::Identity => return (body, enc),
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&body).and_then(|()| e.finish())
        }
        Encoding::Brotli => {
            let mut out = Vec::new();
            let params = brotli::enc::BrotliEncoderParams { quality: 4, ..Default::default() };
            brotli::BrotliCompress(&mut body.as_slice(), &mut out, &params).map(|_| out)
        }
    };
    match out {
        Ok(c) => (c, enc),
        Err(_) => (body, Encoding::Identity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn neg(h: &str) -> Encoding {
        Encoding::negotiate(Some(&HeaderValue::from_str(h).unwrap()))
    }

    #[test]
    fn negotiation_prefers_brotli_and_honours_q_zero() {
        assert_eq!(Encoding::negotiate(None), Encoding::Identity);
        assert_eq!(neg("gzip, deflate, br"), Encoding::Brotli);
        assert_eq!(neg("gzip;q=0.5, br;q=0"), Encoding::Gzip);
        assert_eq!(neg("identity"), Encoding::Identity);
        assert_eq!(neg("*"), Encoding::Brotli);
        // An explicit refusal wins over the wildcard.
        assert_eq!(neg("br;q=0, *"), Encoding::Gzip);
        assert_eq!(neg("br;q=0, gzip;q=0, *"), Encoding::Identity);
    }

    #[test]
    fn compressed_bodies_decode_to_the_original() {
        let body = br#"{"logits":[0.1,0.2,0.3]}"#.repeat(50);
        let (gz, e) = compress(body.clone(), Encoding::Gzip);
        assert_eq!(e, Encoding::Gzip);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice()).read_to_end(&mut back).unwrap();
        assert_eq!(back, body);
        let (br, _) = compress(body.clone(), Encoding::Brotli);
        let mut back = Vec::new();
        brotli::BrotliDecompress(&mut br.as_slice(), &mut back).unwrap();
        assert_eq!(back, body);
        assert!(br.len() < body.len() / 4);
    }
}
