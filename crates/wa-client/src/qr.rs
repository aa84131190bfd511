//! QR codes for pairing: the string the phone scans, and renderings for terminals and web pages.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};

/// The prefix of the scanned URL (current WhatsApp clients).
pub const QR_URL_PREFIX: &str = "https://wa.me/settings/linked_devices#";

/// A QR code to scan with the phone (Linked devices → Link a device).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrCode {
    /// The text encoded in the code.
    pub text: String,
    /// How long this code is valid after it was emitted.
    pub valid_for: Duration,
    /// When it stops being valid.
    pub expires_at: Instant,
}

/// Builds the scanned text `URL#ref,noise,identity,adv,type` (keys as padded base64).
pub fn qr_text(
    reference: &str,
    noise_pub: &[u8; 32],
    identity_pub: &[u8; 32],
    adv_secret: &[u8; 32],
    platform: char,
) -> String {
    format!(
        "{QR_URL_PREFIX}{reference},{},{},{},{platform}",
        STANDARD.encode(noise_pub),
        STANDARD.encode(identity_pub),
        STANDARD.encode(adv_secret)
    )
}

impl QrCode {
    fn matrix(&self) -> Result<qrcode::QrCode> {
        qrcode::QrCode::with_error_correction_level(self.text.as_bytes(), qrcode::EcLevel::L)
            .map_err(|e| Error::InvalidInput(format!("QR text cannot be encoded: {e}")))
    }

    /// The code drawn with Unicode half blocks (two modules per character row), with a quiet
    /// zone, dark modules as `█`; print it on a dark-on-light or light-on-dark terminal alike.
    pub fn to_terminal(&self) -> Result<String> {
        let code = self.matrix()?;
        let width = code.width();
        let colors = code.to_colors();
        let quiet = 2usize;
        let size = width + 2 * quiet;
        let dark = |x: usize, y: usize| -> bool {
            if x < quiet || y < quiet || x >= width + quiet || y >= width + quiet {
                return false;
            }
            colors[(y - quiet) * width + (x - quiet)] == qrcode::Color::Dark
        };
        // Light modules are drawn so the code reads on dark terminal backgrounds.
        let mut out = String::with_capacity(size * (size / 2 + 1) * 3);
        for row in (0..size).step_by(2) {
            for x in 0..size {
                let top = !dark(x, row);
                let bottom = row + 1 < size && !dark(x, row + 1);
                out.push(match (top, bottom) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// A PNG image of the code, `scale` pixels per module, as bytes.
    pub fn to_png(&self, scale: u32) -> Result<Vec<u8>> {
        let code = self.matrix()?;
        let scale = scale.clamp(1, 64) as usize;
        let quiet = 4usize;
        let modules = code.width() + 2 * quiet;
        let px = modules * scale;
        let colors = code.to_colors();
        let width = code.width();
        let mut pixels = vec![255u8; px * px];
        for y in 0..width {
            for x in 0..width {
                if colors[y * width + x] == qrcode::Color::Dark {
                    for dy in 0..scale {
                        let row = ((y + quiet) * scale + dy) * px;
                        let start = row + (x + quiet) * scale;
                        pixels[start..start + scale].fill(0);
                    }
                }
            }
        }
        let side = u32::try_from(px).map_err(|_| Error::InvalidInput("QR image too large".into()))?;
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, side, side);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| Error::InvalidInput(format!("png: {e}")))?;
        writer.write_image_data(&pixels).map_err(|e| Error::InvalidInput(format!("png: {e}")))?;
        writer.finish().map_err(|e| Error::InvalidInput(format!("png: {e}")))?;
        Ok(out)
    }

    /// `data:image/png;base64,…` for an `<img src>`.
    pub fn to_png_data_url(&self, scale: u32) -> Result<String> {
        Ok(format!("data:image/png;base64,{}", STANDARD.encode(self.to_png(scale)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> QrCode {
        QrCode {
            text: qr_text("2@abc", &[1; 32], &[2; 32], &[3; 32], '1'),
            valid_for: Duration::from_secs(60),
            expires_at: Instant::now(),
        }
    }

    #[test]
    fn text_has_five_fields_with_padded_base64() {
        let c = code();
        let body = c.text.strip_prefix(QR_URL_PREFIX).unwrap();
        let parts: Vec<_> = body.split(',').collect();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[0], "2@abc");
        assert_eq!(STANDARD.decode(parts[1]).unwrap(), [1; 32]);
        assert!(parts[2].ends_with('='));
        assert_eq!(parts[4], "1");
    }

    #[test]
    fn terminal_rendering_is_square_ish() {
        let t = code().to_terminal().unwrap();
        let lines: Vec<_> = t.lines().collect();
        let w = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == w));
        assert_eq!(lines.len(), w.div_ceil(2));
    }

    #[test]
    fn png_data_url_decodes_to_png() {
        let url = code().to_png_data_url(4).unwrap();
        let b64 = url.strip_prefix("data:image/png;base64,").unwrap();
        let png = STANDARD.decode(b64).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
