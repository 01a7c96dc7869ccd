//! Rendering payment QR codes (SVG and PNG) and Code 128 barcodes of references.

/// Quiet zone around a QR code, in modules: ISO/IEC 18004 asks for four.
const QUIET_ZONE_MODULES: usize = 4;
/// Pixels per module in the PNG: 8 keeps a 512-character payload scannable from a screen.
const PNG_MODULE_PX: usize = 8;
/// Height of a Code 128 rendering, in SVG user units.
const CODE128_HEIGHT: u32 = 80;
/// The smallest SVG QR code, in user units.
const SVG_MIN_PX: u32 = 240;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot fit into a QR code: {0}")]
    Qr(#[from] qrcode::types::QrError),
    #[error("cannot encode as Code 128: {0:?}")]
    Code128(String),
    #[error("PNG encoding: {0}")]
    Png(#[from] png::EncodingError),
}

/// The payload as an SVG QR code (error correction level M, as payment QR codes use).
pub fn qr_svg(payload: &str) -> Result<String, RenderError> {
    let code = qrcode::QrCode::with_error_correction_level(payload.as_bytes(), qrcode::EcLevel::M)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(SVG_MIN_PX, SVG_MIN_PX)
        .build())
}

/// The payload as a greyscale PNG QR code with its quiet zone.
pub fn qr_png(payload: &str) -> Result<Vec<u8>, RenderError> {
    let code = qrcode::QrCode::with_error_correction_level(payload.as_bytes(), qrcode::EcLevel::M)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE_MODULES) * PNG_MODULE_PX;
    let mut pixels = vec![0xFFu8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (x, y) = (index % modules, index / modules);
        for dy in 0..PNG_MODULE_PX {
            let row = (y + QUIET_ZONE_MODULES) * PNG_MODULE_PX + dy;
            let start = row * side + (x + QUIET_ZONE_MODULES) * PNG_MODULE_PX;
            pixels[start..start + PNG_MODULE_PX].fill(0);
        }
    }
    let side_u32 =
        u32::try_from(side).map_err(|_| RenderError::Png(png::EncodingError::LimitsExceeded))?;
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, side_u32, side_u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
    }
    Ok(out)
}

/// `text` as a Code 128 barcode (code set B: printable ASCII), for printed receipts.
pub fn code128_svg(text: &str) -> Result<String, RenderError> {
    // 'Ɓ' selects code set B in the barcoders crate.
    let barcode = barcoders::sym::code128::Code128::new(format!("Ɓ{text}"))
        .map_err(|e| RenderError::Code128(format!("{e:?}")))?;
    barcoders::generators::svg::SVG::new(CODE128_HEIGHT)
        .generate(barcode.encode())
        .map_err(|e| RenderError::Code128(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_is_a_square_greyscale_image_with_a_quiet_zone() {
        let png_bytes = qr_png("000201010211").expect("renders");
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let reader = decoder.read_info().expect("a PNG");
        let info = reader.info();
        assert_eq!(info.width, info.height);
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        // Version 1 (21 modules) plus 4 quiet modules each side, 8 px each.
        assert_eq!(info.width as usize, (21 + 8) * PNG_MODULE_PX);
    }

    #[test]
    fn a_reference_renders_as_code128_and_non_ascii_is_refused() {
        let svg = code128_svg("INV-2026-0042").expect("renders");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(code128_svg("café").is_err());
    }
}
