//! Provenance read from real files (see tests/fixtures/provenance/README.md for their sources)
//! and from files the tests write themselves: what each declares, what must never count as a
//! declaration of AI, and that broken metadata is a recorded problem, never a panic.

mod common;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use proptest::prelude::*;
use synthscan::provenance::container::Embedded;
use synthscan::provenance::{exif_text, generator, xmp, C2paState, Kind, Provenance, Reader};

fn fixture(name: &str) -> PathBuf {
    common::fixtures().join("provenance").join(name)
}

fn read(reader: &Reader, bytes: Vec<u8>) -> Provenance {
    reader.read(&Bytes::from(bytes))
}

fn read_fixture(reader: &Reader, name: &str) -> Provenance {
    read(reader, std::fs::read(fixture(name)).unwrap())
}

fn reader() -> Reader {
    Reader::new(None).unwrap()
}

#[test]
fn generator_ui_metadata_names_the_generator() {
    let reader = reader();
    for (name, kind, generator) in [
        ("automatic1111_cropped.png", Kind::A1111, "AUTOMATIC1111"),
        // EXIF UserComment, UTF-16 after `UNICODE\0`.
        ("automatic1111_cropped.jpg", Kind::A1111, "AUTOMATIC1111"),
        // A zTXt chunk after the image data.
        ("text_after_idat.png", Kind::A1111, "AUTOMATIC1111"),
        ("img2img_cropped.png", Kind::ComfyUi, "ComfyUI"),
        ("fooocus1_cropped.png", Kind::Fooocus, "Fooocus"),
        ("invokeai_imeta1.png", Kind::InvokeAi, "InvokeAI"),
        ("invokeai_sdmeta1.png", Kind::InvokeAi, "InvokeAI"),
        ("invokeai_dream1.png", Kind::InvokeAi, "InvokeAI"),
        ("novelai1_cropped.png", Kind::NovelAi, "NovelAI"),
    ] {
        let p = read_fixture(&reader, name);
        assert_eq!(p.kind(), Some(kind), "{name}: {p:?}");
        assert_eq!(p.generator(), Some(generator), "{name}");
        assert!(p.ai(), "{name}");
        assert!(p.problems.is_empty(), "{name}: {:?}", p.problems);
        assert_eq!(p.c2pa_state, None, "{name}");
    }
}

#[test]
fn c2pa_manifests_are_walked_and_validated_offline() {
    let reader = reader();

    let firefly = read_fixture(&reader, "Firefly_tabby_cat.jpg");
    assert_eq!(firefly.kind(), Some(Kind::C2pa), "{firefly:?}");
    assert_eq!(firefly.generator(), Some("Adobe Firefly"));
    assert!(firefly.ai());
    // Signed correctly, but no trust anchors were given.
    assert_eq!(
        firefly.c2pa_state,
        Some(C2paState::Untrusted),
        "{firefly:?}"
    );

    // ChatGPT declares trainedAlgorithmicMedia in the parent ingredient's manifest only.
    let chatgpt = read_fixture(&reader, "ChatGPT_Image.png");
    assert_eq!(chatgpt.kind(), Some(Kind::C2pa), "{chatgpt:?}");
    assert_eq!(chatgpt.generator(), Some("ChatGPT (GPT-4o)"));
    let state = chatgpt.c2pa_state.clone().unwrap();
    assert!(
        state.to_string().contains("signingCredential.expired"),
        "the expired credential must show: {state}"
    );

    // Photoshop composite with Firefly generative fill.
    let composite = read_fixture(&reader, "ocsp.jpg");
    assert_eq!(composite.kind(), Some(Kind::C2pa), "{composite:?}");
    assert!(composite.ai(), "{composite:?}");
    assert!(composite.c2pa_state.is_some());

    // algorithmicMedia (no trained model) is not a declaration of AI.
    let algorithmic = read_fixture(&reader, "C.jpg");
    assert_eq!(algorithmic.kind(), Some(Kind::C2pa), "{algorithmic:?}");
    assert!(!algorithmic.ai(), "{algorithmic:?}");
}

#[test]
fn trust_anchors_make_a_signature_trusted() {
    let untrusted = read_fixture(&reader(), "C.jpg");
    assert_eq!(
        untrusted.c2pa_state,
        Some(C2paState::Untrusted),
        "{untrusted:?}"
    );
    let anchored = Reader::new(Some(&fixture("c2pa_test_root_bundle.pem"))).unwrap();
    let trusted = read_fixture(&anchored, "C.jpg");
    assert_eq!(trusted.c2pa_state, Some(C2paState::Valid), "{trusted:?}");
    assert!(Reader::new(Some(Path::new("/nonexistent/anchors.pem"))).is_err());
}

#[test]
fn an_invalid_signature_is_reported_and_not_believed() {
    // Change one byte of the image data that the manifest's hash covers.
    let mut bytes = std::fs::read(fixture("Firefly_tabby_cat.jpg")).unwrap();
    let at = bytes.len() - 1000;
    bytes[at] ^= 0x55;
    let p = read(&reader(), bytes);
    match &p.c2pa_state {
        Some(C2paState::Invalid(codes)) => {
            assert!(codes.iter().any(|c| c.contains("dataHash")), "{codes:?}")
        }
        other => panic!("expected an invalid state, got {other:?}"),
    }
    assert_eq!(p.kind(), Some(Kind::C2pa));
    assert_eq!(p.generator(), Some("Adobe Firefly"));
    assert!(!p.ai(), "an invalid manifest's claim must not count");
}

// ---- XMP written by the tests: every IPTC form, in JPEG, PNG and WebP ----

const IPTC_URI: &str = "http://cv.iptc.org/newscodes/digitalsourcetype/";

fn xmp_packet(form: &str, code: &str) -> String {
    let uri = format!("{IPTC_URI}{code}");
    let (attrs, body) = match form {
        "attribute" => (
            format!(r#" Iptc4xmpExt:DigitalSourceType="{uri}""#),
            String::new(),
        ),
        "element" => (
            String::new(),
            format!("<Iptc4xmpExt:DigitalSourceType>{uri}</Iptc4xmpExt:DigitalSourceType>"),
        ),
        "resource" => (
            String::new(),
            format!(r#"<Iptc4xmpExt:DigitalSourceType rdf:resource="{uri}"/>"#),
        ),
        // Another prefix bound to the same namespace.
        "prefix" => (
            String::new(),
            format!(
                r#"<ext:DigitalSourceType xmlns:ext="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">{uri}</ext:DigitalSourceType>"#
            ),
        ),
        _ => unreachable!(),
    };
    format!(
        r#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="Test Generator"{attrs}>{body}</rdf:Description>
</rdf:RDF></x:xmpmeta><?xpacket end="w"?>"#
    )
}

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(48, 32, |x, y| image::Rgb([x as u8 * 5, y as u8 * 7, 90]));
    let img = if format == image::ImageFormat::WebP {
        image::DynamicImage::ImageRgba8(image::DynamicImage::ImageRgb8(img).to_rgba8())
    } else {
        image::DynamicImage::ImageRgb8(img)
    };
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A JPEG with extra APPn segments right after SOI.
fn jpeg_with(segments: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let jpeg = encoded(image::ImageFormat::Jpeg);
    let mut out = jpeg[..2].to_vec();
    for (marker, data) in segments {
        out.extend([0xFF, *marker]);
        out.extend(((data.len() + 2) as u16).to_be_bytes());
        out.extend(data);
    }
    out.extend(&jpeg[2..]);
    out
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend(kind);
    out.extend(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend(crc.finalize().to_be_bytes());
    out
}

/// A PNG with extra chunks after IHDR.
fn png_with(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let png = encoded(image::ImageFormat::Png);
    let ihdr_end = 8 + 8 + 13 + 4;
    let mut out = png[..ihdr_end].to_vec();
    for (kind, data) in chunks {
        out.extend(png_chunk(kind, data));
    }
    out.extend(&png[ihdr_end..]);
    out
}

fn itxt(keyword: &str, text: &str) -> Vec<u8> {
    let mut data = keyword.as_bytes().to_vec();
    data.extend([0, 0, 0, 0, 0]);
    data.extend(text.as_bytes());
    data
}

fn text_chunk(keyword: &str, text: &str) -> Vec<u8> {
    let mut data = keyword.as_bytes().to_vec();
    data.push(0);
    data.extend(text.as_bytes());
    data
}

/// An extended WebP (VP8X) with extra chunks after the image data.
fn webp_with(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let simple = encoded(image::ImageFormat::WebP);
    assert_eq!(&simple[12..15], b"VP8", "a simple WebP");
    let image_chunk = &simple[12..];
    let mut flags = 0x10u8; // alpha
    for (id, _) in chunks {
        match *id {
            b"EXIF" => flags |= 0x08,
            b"XMP " => flags |= 0x04,
            _ => {}
        }
    }
    let mut vp8x = vec![flags, 0, 0, 0];
    vp8x.extend(&47u32.to_le_bytes()[..3]);
    vp8x.extend(&31u32.to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    body.extend(riff_chunk(b"VP8X", &vp8x));
    body.extend(image_chunk);
    for (id, data) in chunks {
        body.extend(riff_chunk(id, data));
    }
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

fn riff_chunk(id: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = id.to_vec();
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
    out
}

fn with_xmp(format: &str, packet: &str) -> Vec<u8> {
    match format {
        "jpeg" => {
            let mut data = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
            data.extend(packet.as_bytes());
            jpeg_with(&[(0xE1, data)])
        }
        "png" => png_with(&[(b"iTXt", itxt("XML:com.adobe.xmp", packet))]),
        "webp" => webp_with(&[(b"XMP ", packet.as_bytes().to_vec())]),
        _ => unreachable!(),
    }
}

#[test]
fn iptc_digital_source_type_in_every_form_and_container() {
    let reader = reader();
    for format in ["jpeg", "png", "webp"] {
        for form in ["attribute", "element", "resource", "prefix"] {
            for (code, ai) in [
                ("trainedAlgorithmicMedia", true),
                ("compositeWithTrainedAlgorithmicMedia", true),
                ("compositeSynthetic", true),
                ("algorithmicMedia", false),
                ("digitalCapture", false),
                ("screenCapture", false),
            ] {
                let bytes = with_xmp(format, &xmp_packet(form, code));
                let decoded = image::load_from_memory(&bytes);
                assert!(decoded.is_ok(), "{format}: the test file must stay valid");
                let p = read(&reader, bytes);
                let what = format!("{format} {form} {code}: {p:?}");
                assert_eq!(p.kind(), Some(Kind::Iptc), "{what}");
                assert_eq!(p.ai(), ai, "{what}");
                assert_eq!(p.generator(), Some("Test Generator"), "{what}");
                assert!(p.problems.is_empty(), "{what}");
            }
        }
    }
}

#[test]
fn iptc_2025_ai_fields_declare_and_name_the_system() {
    let packet = r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">
<Iptc4xmpExt:AISystemUsed>Imagen</Iptc4xmpExt:AISystemUsed>
<Iptc4xmpExt:AISystemVersionUsed>3</Iptc4xmpExt:AISystemVersionUsed>
</rdf:Description></rdf:RDF></x:xmpmeta>"#;
    let p = read(&reader(), with_xmp("png", packet));
    assert_eq!(p.kind(), Some(Kind::Iptc));
    assert!(p.ai());
    assert_eq!(p.generator(), Some("Imagen 3"));
}

// ---- what must never declare AI ----

/// A TIFF-structured EXIF block with these primary-image ASCII fields.
fn exif_block(fields: &[(exif::Tag, &str)]) -> Vec<u8> {
    let owned: Vec<exif::Field> = fields
        .iter()
        .map(|(tag, text)| exif::Field {
            tag: *tag,
            ifd_num: exif::In::PRIMARY,
            value: exif::Value::Ascii(vec![text.as_bytes().to_vec()]),
        })
        .collect();
    let mut writer = exif::experimental::Writer::new();
    for f in &owned {
        writer.push_field(f);
    }
    let mut out = Cursor::new(Vec::new());
    writer.write(&mut out, false).unwrap();
    out.into_inner()
}

fn jpeg_exif(fields: &[(exif::Tag, &str)]) -> Vec<u8> {
    let mut data = b"Exif\0\0".to_vec();
    data.extend(exif_block(fields));
    jpeg_with(&[(0xE1, data)])
}

#[test]
fn edited_photos_screenshots_and_algorithmic_media_never_declare_ai() {
    let reader = reader();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for software in [
        "Adobe Photoshop 25.3 (Windows)",
        "Adobe Photoshop Lightroom Classic 13.1 (Macintosh)",
        "GIMP 2.10.36",
        "Snipping Tool",
        "gnome-screenshot",
    ] {
        files.push((
            format!("jpeg Software={software}"),
            jpeg_exif(&[
                (exif::Tag::Make, "Canon"),
                (exif::Tag::Model, "Canon EOS R5"),
                (exif::Tag::Software, software),
            ]),
        ));
        files.push((
            format!("png Software={software}"),
            png_with(&[(b"tEXt", text_chunk("Software", software))]),
        ));
    }
    // A real image from the samples, re-saved by an editor.
    let photo =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/real/01.jpg")).unwrap();
    let mut edited = photo[..2].to_vec();
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(exif_block(&[(exif::Tag::Software, "Adobe Photoshop 24.0")]));
    edited.extend([0xFF, 0xE1]);
    edited.extend(((app1.len() + 2) as u16).to_be_bytes());
    edited.extend(app1);
    edited.extend(&photo[2..]);
    files.push(("edited sample photo".into(), edited));
    files.push(("sample photo".into(), photo));
    files.push((
        "screenshot".into(),
        with_xmp("png", &xmp_packet("element", "screenCapture")),
    ));
    files.push((
        "algorithmicMedia".into(),
        with_xmp("jpeg", &xmp_packet("resource", "algorithmicMedia")),
    ));
    files.push((
        "c2pa algorithmicMedia".into(),
        std::fs::read(fixture("C.jpg")).unwrap(),
    ));
    for (what, bytes) in files {
        let p = read(&reader, bytes);
        assert!(!p.ai(), "{what}: {p:?}");
        assert!(p.problems.is_empty(), "{what}: {p:?}");
    }
}

// ---- broken metadata: a recorded problem, never a panic ----

#[test]
fn malformed_metadata_of_every_kind_is_a_recorded_problem() {
    let reader = reader();
    let mut bad_c2pa = std::fs::read(fixture("Firefly_tabby_cat.jpg")).unwrap();
    // Garble the JUMBF boxes inside the first APP11 segment.
    let app11 = bad_c2pa
        .windows(2)
        .position(|w| w == [0xFF, 0xEB])
        .expect("an APP11 segment");
    for b in &mut bad_c2pa[app11 + 20..app11 + 60] {
        *b = 0xA5;
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "xmp",
            with_xmp(
                "jpeg",
                "<x:xmpmeta><rdf:RDF><unclosed attr=\"1></x:xmpmeta>",
            ),
            "xmp:",
        ),
        (
            "exif",
            jpeg_with(&[(0xE1, b"Exif\0\0MM\0*\0\0\0\x08\0\x09\x01".to_vec())]),
            "exif:",
        ),
        (
            "png text",
            png_with(&[(b"zTXt", b"parameters\0\0not zlib at all".to_vec())]),
            "png text:",
        ),
        (
            "comfyui json",
            png_with(&[(b"tEXt", text_chunk("workflow", "{\"nodes\": [1, 2"))]),
            "comfyui workflow:",
        ),
        ("c2pa", bad_c2pa, "c2pa"),
    ];
    for (what, bytes, problem) in cases {
        let p = read(&reader, bytes);
        let text = p.problems_text().unwrap_or_default();
        let recorded = text.contains(problem)
            || p.c2pa_state
                .as_ref()
                .is_some_and(|s| matches!(s, C2paState::Invalid(_)));
        assert!(recorded, "{what}: {p:?}");
        assert!(!p.ai(), "{what}: {p:?}");
    }
}

#[test]
fn a_truncated_file_keeps_its_declaration_or_records_why_not() {
    let reader = reader();
    for name in [
        "automatic1111_cropped.jpg",
        "img2img_cropped.png",
        "novelai1_cropped.png",
        "ocsp.jpg",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for cut in [8, 20, 64, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
            let p = read(&reader, bytes[..cut].to_vec());
            let invalid = matches!(p.c2pa_state, Some(C2paState::Invalid(_)));
            assert!(
                p.ai() || !p.problems.is_empty() || invalid,
                "{name} cut at {cut}: {p:?}"
            );
        }
    }
}

/// The readers below the panic guard, fed arbitrary and mutated input: none may panic.
fn readers_survive(bytes: &[u8]) {
    let bytes = Bytes::copy_from_slice(bytes);
    let found = Embedded::find(&bytes);
    for packet in &found.xmp {
        let _ = xmp::read(packet);
    }
    let mut fields = found.text.clone();
    for block in &found.exif {
        if let Ok(f) = exif_text::fields(block) {
            fields.extend(f);
        }
    }
    let _ = generator::recognise(&fields);
    let _ = xmp::read(&bytes);
    let _ = exif_text::fields(&bytes);
}

static SEEDS: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(seeds);

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = [
        "automatic1111_cropped.jpg",
        "automatic1111_cropped.png",
        "img2img_cropped.png",
        "invokeai_sdmeta1.png",
        "novelai1_cropped.png",
    ]
    .iter()
    .map(|n| std::fs::read(fixture(n)).unwrap())
    .collect();
    seeds.push(with_xmp(
        "webp",
        &xmp_packet("attribute", "trainedAlgorithmicMedia"),
    ));
    seeds.push(with_xmp(
        "jpeg",
        &xmp_packet("element", "trainedAlgorithmicMedia"),
    ));
    seeds.push(jpeg_exif(&[(exif::Tag::Software, "GIMP 2.10")]));
    seeds
}

proptest! {
    // 512 cases, or PROPTEST_CASES where that asks for more (see README).
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn metadata_readers_never_panic_on_mutated_files(
        seed in 0usize..8,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = SEEDS[seed].clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len()) + 1;
        readers_survive(&bytes[..keep]);
    }

    #[test]
    fn metadata_readers_never_panic_on_arbitrary_bytes(
        head in prop::sample::select(vec![
            b"\xFF\xD8\xFF\xE1".to_vec(),
            b"\x89PNG\r\n\x1a\n".to_vec(),
            b"RIFF\0\0\0\0WEBP".to_vec(),
            b"II*\0".to_vec(),
            b"<x:xmpmeta ".to_vec(),
        ]),
        tail in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = head;
        bytes.extend(tail);
        readers_survive(&bytes);
    }
}

// ---- end to end: the columns, the label policy, one row per file ----

#[test]
fn scan_writes_provenance_columns_and_declared_labels() {
    use arrow::array::{Array, AsArray, BooleanArray};

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for name in ["automatic1111_cropped.png", "C.jpg", "img2img_cropped.png"] {
        std::fs::copy(fixture(name), input.join(name)).unwrap();
    }
    std::fs::write(
        input.join("iptc.webp"),
        with_xmp("webp", &xmp_packet("resource", "trainedAlgorithmicMedia")),
    )
    .unwrap();
    std::fs::write(
        input.join("camera.jpg"),
        with_xmp("jpeg", &xmp_packet("element", "digitalCapture")),
    )
    .unwrap();
    // Pixels fine, metadata broken: the row stays ok and says what was wrong.
    std::fs::write(
        input.join("broken-xmp.jpg"),
        with_xmp("jpeg", "<x:xmpmeta><rdf:RDF><oops attr=\"</x:xmpmeta>"),
    )
    .unwrap();
    // Metadata fine, pixels broken: the status says so and the declaration is still read.
    let png = std::fs::read(fixture("img2img_cropped.png")).unwrap();
    let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
    let mut broken = png.clone();
    // Zero the start of the image data, short of IEND (the fixture is small).
    let end = (idat + 40).min(broken.len() - 12);
    for b in &mut broken[idat + 4..end] {
        *b = 0;
    }
    std::fs::write(input.join("broken-pixels.png"), broken).unwrap();

    let scan = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "scan",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let model = common::tiny_model();
        args.extend(model.iter().map(String::as_str));
        common::run_ok(&mut common::synthscan(&args));
        common::read_batch(out)
    };
    let batch = scan(&dir.path().join("v.parquet"), &[]);
    assert_eq!(batch.num_rows(), 7);
    let s = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_string::<i32>()
            .clone()
    };
    let (path, kind, generator, basis, label, model_label, status, problem) = (
        s("path"),
        s("provenance"),
        s("provenance_generator"),
        s("basis"),
        s("label"),
        s("label_tiny_cnn"),
        s("status"),
        s("provenance_error"),
    );
    let ai = batch
        .column_by_name("provenance_ai")
        .unwrap()
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap()
        .clone();
    let opt =
        |c: &arrow::array::StringArray, i: usize| c.is_valid(i).then(|| c.value(i).to_string());
    for i in 0..batch.num_rows() {
        let name = Path::new(path.value(i))
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let row = (
            opt(&kind, i),
            opt(&generator, i),
            ai.is_valid(i).then(|| ai.value(i)),
            opt(&basis, i),
            status.value(i).to_string(),
        );
        let want: (Option<&str>, Option<&str>, Option<bool>, Option<&str>, &str) =
            match name.as_str() {
                "automatic1111_cropped.png" => (
                    Some("a1111"),
                    Some("AUTOMATIC1111"),
                    Some(true),
                    Some("declared"),
                    "ok",
                ),
                "img2img_cropped.png" => (
                    Some("comfyui"),
                    Some("ComfyUI"),
                    Some(true),
                    Some("declared"),
                    "ok",
                ),
                "iptc.webp" => (
                    Some("iptc"),
                    Some("Test Generator"),
                    Some(true),
                    Some("declared"),
                    "ok",
                ),
                "C.jpg" => (Some("c2pa"), None, Some(false), Some("model"), "ok"),
                "camera.jpg" => (
                    Some("iptc"),
                    Some("Test Generator"),
                    Some(false),
                    Some("model"),
                    "ok",
                ),
                "broken-xmp.jpg" => (None, None, Some(false), Some("model"), "ok"),
                "broken-pixels.png" => (
                    Some("comfyui"),
                    Some("ComfyUI"),
                    Some(true),
                    None,
                    "decode_error",
                ),
                other => panic!("unexpected row {other}"),
            };
        let got = (
            row.0.as_deref(),
            row.1.as_deref(),
            row.2,
            row.3.as_deref(),
            row.4.as_str(),
        );
        if name == "C.jpg" {
            // The claim generator's name is whatever the test signer wrote; only its presence
            // matters here.
            assert!(row.1.is_some(), "{name}");
            assert_eq!(
                (got.0, got.2, got.3, got.4),
                (want.0, want.2, want.3, want.4),
                "{name}"
            );
        } else {
            assert_eq!(got, want, "{name}");
        }
        // A declaration of AI makes the final label fake; the model's own label is untouched.
        match row.3.as_deref() {
            Some("declared") => assert_eq!(label.value(i), "fake", "{name}"),
            Some("model") => assert_eq!(opt(&label, i), opt(&model_label, i), "{name}"),
            _ => assert!(label.is_null(i), "{name}"),
        }
        assert_eq!(
            problem.is_valid(i),
            name == "broken-xmp.jpg",
            "{name}: {:?}",
            opt(&problem, i)
        );
    }
    assert_eq!(s("c2pa_state").iter().flatten().count(), 1);

    // Off: every provenance column is null and the label is the model's.
    let off = scan(&dir.path().join("off.parquet"), &["--no-provenance"]);
    for column in [
        "provenance",
        "provenance_generator",
        "provenance_ai",
        "c2pa_state",
    ] {
        let c = off.column_by_name(column).unwrap();
        assert_eq!(c.null_count(), off.num_rows(), "{column}");
    }
    let (label, model_label) = (
        off.column_by_name("label").unwrap().as_string::<i32>(),
        off.column_by_name("label_tiny_cnn")
            .unwrap()
            .as_string::<i32>(),
    );
    assert_eq!(label, model_label);
}

fn ztxt(keyword: &str, text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(text.as_bytes()).unwrap();
    let mut data = keyword.as_bytes().to_vec();
    data.extend([0, 0]);
    data.extend(z.finish().unwrap());
    data
}

#[test]
fn text_past_the_inflation_budget_is_a_recorded_problem_not_a_silent_loss() {
    use synthscan::provenance::container::TEXT_BUDGET;
    let reader = reader();
    let infotext = "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1";
    let padded = |padding: u64| format!("{}{infotext}", " ".repeat(padding as usize));
    // Within the budget, padding or not, the declaration is read.
    let p = read(
        &reader,
        png_with(&[(b"zTXt", ztxt("parameters", &padded(TEXT_BUDGET / 2)))]),
    );
    assert_eq!(p.kind(), Some(Kind::A1111), "{:?}", p.problems);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    // Past it the chunk is not read, and the row says why.
    let p = read(
        &reader,
        png_with(&[(b"zTXt", ztxt("parameters", &padded(TEXT_BUDGET)))]),
    );
    assert_eq!(p.kind(), None);
    let text = p.problems_text().unwrap_or_default();
    assert!(text.contains("zTXt \"parameters\""), "{text}");
    assert!(text.contains("budget"), "{text}");
    // The budget is the file's, not each chunk's: chunks that each fit still add up.
    let half = ztxt("Comment", &" ".repeat(TEXT_BUDGET as usize / 2 + 1));
    let p = read(
        &reader,
        png_with(&[(b"zTXt", half.clone()), (b"zTXt", half)]),
    );
    let text = p.problems_text().unwrap_or_default();
    assert!(
        text.contains("zTXt \"Comment\"") && text.contains("budget"),
        "{text}"
    );
}
