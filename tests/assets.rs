//! Brand assets against the real binary: round trips of every accepted type, byte for byte;
//! conditional and range requests made with curl; deduplication, collection and concurrent
//! uploads of the same bytes; `kill -9` in the middle of an upload; thumbnails and a
//! decompression bomb; refusals (415, 413); SVG's sandbox; lists; path traversal on every path
//! parameter and on the web root; and the web root itself.
//!
//! Files are real where this machine has one or the `image` crate can make one: PNG, JPEG,
//! WebP and GIF are encoded here, the PDF is built here with a valid cross-reference table,
//! the TrueType font is Debian's DejaVu Sans and the WOFF2 font one that rustup installs.
//! AVIF, OpenType (CFF), MP4 and WebM have no encoder or file here: those are generated with
//! their real container headers (the bytes the type is told by) and filler after them.

mod support;

use std::collections::BTreeSet;
use std::io::{Cursor, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat, RgbImage, RgbaImage};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{Client, Daemon, Reply};

const SVG_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

// ----- files of every type ------------------------------------------------------------------

fn rgba(width: u32, height: u32) -> RgbaImage {
    RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([
            (x * 7) as u8,
            (y * 5) as u8,
            ((x + y) * 3) as u8,
            255 - (x % 64) as u8,
        ])
    })
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).expect("encode");
    bytes.into_inner()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    encode(
        DynamicImage::ImageRgba8(rgba(width, height)),
        ImageFormat::Png,
    )
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let rgb = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
    encode(DynamicImage::ImageRgb8(rgb), ImageFormat::Jpeg)
}

fn webp(width: u32, height: u32) -> Vec<u8> {
    encode(
        DynamicImage::ImageRgba8(rgba(width, height)),
        ImageFormat::WebP,
    )
}

fn gif(width: u32, height: u32) -> Vec<u8> {
    encode(
        DynamicImage::ImageRgba8(rgba(width, height)),
        ImageFormat::Gif,
    )
}

fn svg() -> Vec<u8> {
    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
      <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\">\
      <circle cx=\"32\" cy=\"32\" r=\"30\" fill=\"#0b1f3a\"/>\
      <script>alert(document.cookie)</script></svg>\n"
        .to_vec()
}

/// A one-page PDF with a correct cross-reference table.
fn pdf() -> Vec<u8> {
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
        "<< /Length 35 >>\nstream\n0.04 0.12 0.23 rg 20 20 160 160 re f\nendstream",
    ];
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (number, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", number + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// Filler after a generated header, different per call site so contents differ.
fn filler(seed: u8, length: usize) -> Vec<u8> {
    (0..length)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(u32::from(seed)) as u8
        })
        .collect()
}

/// An ISO media `ftyp` box with `brands`, then a `free` box of filler.
fn iso_media(brands: &[&[u8; 4]], seed: u8) -> Vec<u8> {
    let mut ftyp = Vec::new();
    ftyp.extend_from_slice(&(16 + 4 * brands.len() as u32).to_be_bytes());
    ftyp.extend_from_slice(b"ftyp");
    ftyp.extend_from_slice(brands[0]);
    ftyp.extend_from_slice(&[0, 0, 0, 0]);
    for brand in brands {
        ftyp.extend_from_slice(*brand);
    }
    let body = filler(seed, 4096);
    ftyp.extend_from_slice(&(8 + body.len() as u32).to_be_bytes());
    ftyp.extend_from_slice(b"free");
    ftyp.extend_from_slice(&body);
    ftyp
}

fn avif() -> Vec<u8> {
    iso_media(&[b"avif", b"mif1", b"miaf"], 1)
}

fn mp4() -> Vec<u8> {
    iso_media(&[b"isom", b"iso2", b"mp41"], 2)
}

/// An EBML header whose DocType is `webm`, then filler.
fn webm() -> Vec<u8> {
    let mut bytes = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\
        \x42\xf3\x81\x08\x42\x82\x84webm\x42\x87\x81\x04\x42\x85\x81\x02"
        .to_vec();
    bytes.extend(filler(3, 2048));
    bytes
}

/// An sfnt header with the CFF tag and a table directory, then filler.
fn otf() -> Vec<u8> {
    let mut bytes = b"OTTO\x00\x0a\x00\x80\x00\x03\x00\x20".to_vec();
    bytes.extend(filler(4, 2048));
    bytes
}

fn ttf() -> Vec<u8> {
    let path = Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");
    std::fs::read(path).unwrap_or_else(|_| {
        eprintln!("no {}: using a generated TrueType header", path.display());
        let mut bytes = b"\x00\x01\x00\x00\x00\x10\x01\x00\x00\x04\x00\x00".to_vec();
        bytes.extend(filler(5, 2048));
        bytes
    })
}

/// A WOFF2 font that rustup installs with the documentation, else a generated header.
fn woff2() -> Vec<u8> {
    let found = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".rustup")))
        .and_then(|rustup| find_file(&rustup.join("toolchains"), "woff2", 6));
    match found {
        Some(path) => std::fs::read(path).unwrap(),
        None => {
            eprintln!("no WOFF2 font on this machine: using a generated header");
            let mut bytes = b"wOF2\x00\x01\x00\x00".to_vec();
            bytes.extend(filler(6, 2048));
            bytes
        }
    }
}

fn find_file(folder: &Path, extension: &str, depth: u32) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    entries.sort();
    for path in &entries {
        if path.extension().is_some_and(|found| found == extension) && path.is_file() {
            return Some(path.clone());
        }
    }
    if depth == 0 {
        return None;
    }
    entries
        .iter()
        .filter(|path| path.is_dir())
        .find_map(|path| find_file(path, extension, depth - 1))
}

/// Bytes that sniff as a PDF; for tests where only size and identity matter.
fn pdf_like(seed: u8, length: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend(filler(seed, length - bytes.len()));
    bytes
}

// ----- helpers --------------------------------------------------------------------------------

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn upload(client: &Client, project: &str, query: &str, bytes: &[u8]) -> Reply {
    client.send(
        "POST",
        &format!("/api/v1/projects/{project}/assets{query}"),
        &[("Content-Type", "application/octet-stream")],
        Some(bytes),
    )
}

fn upload_ok(client: &Client, project: &str, name: &str, bytes: &[u8]) -> Value {
    let reply = upload(client, project, &format!("?filename={name}"), bytes);
    assert_eq!(reply.status, 201, "{name}: {}", reply.body);
    reply.json()
}

fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.error_code(), code, "{}", reply.body);
}

/// An answer as curl got it.
struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Runs curl against the daemon with the key and `args`, for `path` (sent as is).
fn curl(daemon: &Daemon, key: &str, args: &[&str], path: &str) -> Fetched {
    let scratch = tempfile::tempdir().unwrap();
    let (headers, body) = (scratch.path().join("h"), scratch.path().join("b"));
    let output = Command::new("curl")
        .args(["-sS", "--path-as-is", "-o"])
        .arg(&body)
        .arg("-D")
        .arg(&headers)
        .args(["-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {key}"))
        .args(args)
        .arg(format!("{}{path}", daemon.url))
        .output()
        .expect("curl is installed");
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    let headers = std::fs::read_to_string(&headers)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Fetched {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
    }
}

fn assets_dir(daemon: &Daemon) -> PathBuf {
    daemon.dir.path().join("data").join("assets")
}

/// Every file under `sha256/`, by name.
fn stored_files(daemon: &Daemon) -> Vec<PathBuf> {
    fn walk(folder: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&assets_dir(daemon).join("sha256"), &mut found);
    found.sort();
    found
}

/// The blobs (not thumbnails) stored, checking that each one's bytes hash to its name.
fn stored_blobs(daemon: &Daemon) -> BTreeSet<String> {
    stored_files(daemon)
        .into_iter()
        .filter(|path| !path.file_name().unwrap().to_string_lossy().contains('.'))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(
                sha256_hex(&bytes),
                name,
                "{} holds other bytes",
                path.display()
            );
            name
        })
        .collect()
}

fn wait_for_thumbnails(client: &Client, id: &str, wanted: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let asset = client.get(&format!("/api/v1/assets/{id}")).json();
        if asset["thumbnail_state"] == wanted || Instant::now() > deadline {
            return asset;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn setup() -> (Daemon, String, Client, String) {
    setup_with(&[])
}

fn setup_with(env: &[(&str, &str)]) -> (Daemon, String, Client, String) {
    let daemon = Daemon::start_with(env);
    let key = daemon.create_key("designer", "write");
    let client = daemon.client(&key);
    let project = client.create_project("Brand kit");
    (daemon, key, client, project)
}

// ----- tests ----------------------------------------------------------------------------------

#[test]
fn every_accepted_type_round_trips_byte_for_byte() {
    let (daemon, key, client, project) = setup();
    let files: [(&str, &str, Vec<u8>); 12] = [
        ("logo.png", "image/png", png(300, 200)),
        ("photo.jpg", "image/jpeg", jpeg(320, 240)),
        ("hero.webp", "image/webp", webp(200, 300)),
        ("spinner.gif", "image/gif", gif(64, 48)),
        ("banner.avif", "image/avif", avif()),
        ("mark.svg", "image/svg+xml", svg()),
        ("brand.woff2", "font/woff2", woff2()),
        ("brand.ttf", "font/ttf", ttf()),
        ("brand.otf", "font/otf", otf()),
        ("intro.mp4", "video/mp4", mp4()),
        ("loop.webm", "video/webm", webm()),
        ("guide.pdf", "application/pdf", pdf()),
    ];

    for (name, mime, bytes) in &files {
        let asset = upload_ok(&client, &project, name, bytes);
        let sha256 = sha256_hex(bytes);
        assert_eq!(asset["mime"], *mime, "{name}");
        assert_eq!(asset["size"], bytes.len(), "{name}");
        assert_eq!(asset["sha256"], sha256, "{name}");
        assert_eq!(asset["file_name"], *name);
        assert_eq!(asset["uploaded_by"], "designer");
        let id = asset["id"].as_str().unwrap();

        let content = curl(&daemon, &key, &[], &format!("/api/v1/assets/{id}/content"));
        assert_eq!(content.status, 200, "{name}");
        assert!(content.body == *bytes, "{name}: the download differs");
        assert_eq!(content.header("Content-Type"), Some(*mime), "{name}");
        assert_eq!(
            content.header("Content-Length"),
            Some(&*bytes.len().to_string())
        );
        assert_eq!(content.header("ETag"), Some(&*format!("\"{sha256}\"")));
        assert_eq!(content.header("Accept-Ranges"), Some("bytes"));
        assert_eq!(content.header("X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(content.header("Cache-Control"), Some("private, max-age=60"));

        let blob = curl(&daemon, &key, &[], &format!("/api/v1/blobs/{sha256}"));
        assert_eq!(blob.status, 200, "{name}");
        assert!(blob.body == *bytes, "{name}: the blob differs");
        assert_eq!(blob.header("Content-Type"), Some(*mime));
        assert_eq!(
            blob.header("Cache-Control"),
            Some("public, max-age=31536000, immutable")
        );
    }
    assert_eq!(stored_blobs(&daemon).len(), files.len());

    // A browser's form, with the name from the part and the fields beside it.
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("form-logo.png");
    let bytes = png(40, 30);
    std::fs::write(&file, &bytes).unwrap();
    let uploaded = curl(
        &daemon,
        &key,
        &[
            "-F",
            &format!("file=@{};type=image/png", file.display()),
            "-F",
            "tags=logo, dark ,logo",
            "-F",
            "description=The dark logo",
        ],
        &format!("/api/v1/projects/{project}/assets"),
    );
    assert_eq!(
        uploaded.status,
        201,
        "{}",
        String::from_utf8_lossy(&uploaded.body)
    );
    let asset: Value = serde_json::from_slice(&uploaded.body).unwrap();
    assert_eq!(asset["file_name"], "form-logo.png");
    assert_eq!(asset["tags"], serde_json::json!(["logo", "dark"]));
    assert_eq!(asset["description"], "The dark logo");
    assert_eq!(
        (&asset["width"], &asset["height"]),
        (&Value::from(40), &Value::from(30))
    );
    let location = uploaded.header("Location").unwrap().to_string();
    let content = curl(&daemon, &key, &[], &format!("{location}/content"));
    assert!(content.body == bytes);

    // Headers carry UTF-8 percent-encoded; the type comes from the bytes, not the name.
    let reply = client.send(
        "POST",
        &format!("/api/v1/projects/{project}/assets"),
        &[
            ("Content-Type", "image/png"),
            ("X-Filename", "r%C3%A9sum%C3%A9.png"),
            ("X-Tags", "cv,%C3%A9t%C3%A9"),
            ("X-Description", "Mon%20CV"),
        ],
        Some(&pdf()),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let asset = reply.json();
    assert_eq!(asset["file_name"], "résumé.png");
    assert_eq!(asset["mime"], "application/pdf");
    assert_eq!(asset["tags"], serde_json::json!(["cv", "été"]));
    assert_eq!(asset["description"], "Mon CV");
    let id = asset["id"].as_str().unwrap();
    let content = curl(&daemon, &key, &[], &format!("/api/v1/assets/{id}/content"));
    assert_eq!(
        content.header("Content-Disposition"),
        Some("inline; filename=\"r_sum_.png\"; filename*=UTF-8''r%C3%A9sum%C3%A9.png")
    );

    // Who may upload and read.
    let reader = daemon.client(&daemon.create_key("viewer", "read"));
    assert_error(&upload(&reader, &project, "", &png(2, 2)), 403, "forbidden");
    let anonymous = Client::anonymous(&daemon.url);
    assert_error(
        &upload(&anonymous, &project, "", &png(2, 2)),
        401,
        "missing_api_key",
    );
    assert_eq!(reader.get(&format!("/api/v1/assets/{id}")).status, 200);
    assert_error(
        &anonymous.get(&format!("/api/v1/assets/{id}/content")),
        401,
        "missing_api_key",
    );
    let missing = "00000000-0000-4000-8000-000000000000";
    assert_error(&upload(&client, missing, "", &png(2, 2)), 404, "not_found");
}

#[test]
fn conditional_and_range_requests_as_curl_makes_them() {
    let (daemon, key, client, project) = setup();
    let bytes = pdf_like(7, 100_000);
    let sha256 = sha256_hex(&bytes);
    let id = upload_ok(&client, &project, "big.pdf", &bytes)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let len = bytes.len();

    for path in [
        format!("/api/v1/assets/{id}/content"),
        format!("/api/v1/blobs/{sha256}"),
    ] {
        let etag = format!("\"{sha256}\"");
        let not_modified = curl(
            &daemon,
            &key,
            &["-H", &format!("If-None-Match: {etag}")],
            &path,
        );
        assert_eq!(not_modified.status, 304, "{path}");
        assert!(not_modified.body.is_empty());
        assert_eq!(not_modified.header("ETag"), Some(&*etag));
        let other = curl(
            &daemon,
            &key,
            &["-H", "If-None-Match: \"other\", W/\"x\""],
            &path,
        );
        assert_eq!(other.status, 200);

        let part = curl(&daemon, &key, &["-r", "100-199"], &path);
        assert_eq!(part.status, 206, "{path}");
        assert_eq!(
            part.header("Content-Range"),
            Some(&*format!("bytes 100-199/{len}"))
        );
        assert_eq!(part.header("Content-Length"), Some("100"));
        assert!(part.body == bytes[100..200]);

        let suffix = curl(&daemon, &key, &["-r", "-50"], &path);
        assert_eq!(suffix.status, 206);
        assert!(suffix.body == bytes[len - 50..]);
        let open = curl(&daemon, &key, &["-r", "99000-"], &path);
        assert_eq!(open.status, 206);
        assert_eq!(
            open.header("Content-Range"),
            Some(&*format!("bytes 99000-{}/{len}", len - 1))
        );
        assert!(open.body == bytes[99_000..]);

        let outside = curl(&daemon, &key, &["-r", &format!("{len}-")], &path);
        assert_eq!(outside.status, 416);
        assert_eq!(
            outside.header("Content-Range"),
            Some(&*format!("bytes */{len}"))
        );
        let error: Value = serde_json::from_slice(&outside.body).unwrap();
        assert_eq!(error["error"]["code"], "range_not_satisfiable");

        // Several ranges may be answered with the whole file.
        let several = curl(&daemon, &key, &["-r", "0-1,5-6"], &path);
        assert_eq!(several.status, 200);
        assert!(several.body == bytes);
        // A resumed download of another version gets the whole current one.
        let stale = curl(
            &daemon,
            &key,
            &["-r", "0-9", "-H", "If-Range: \"old\""],
            &path,
        );
        assert_eq!(stale.status, 200);
        assert_eq!(stale.body.len(), len);
        let resumed = curl(
            &daemon,
            &key,
            &["-r", "0-9", "-H", &format!("If-Range: {etag}")],
            &path,
        );
        assert_eq!(resumed.status, 206);

        let head = curl(&daemon, &key, &["-I"], &path);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("Content-Length"), Some(&*len.to_string()));
    }

    // Resuming an interrupted download with curl's own -C.
    let scratch = tempfile::tempdir().unwrap();
    let partial = scratch.path().join("partial.pdf");
    std::fs::write(&partial, &bytes[..40_000]).unwrap();
    let status = Command::new("curl")
        .args(["-sS", "-C", "-", "-o"])
        .arg(&partial)
        .arg("-H")
        .arg(format!("Authorization: Bearer {key}"))
        .arg(format!("{}/api/v1/blobs/{sha256}", daemon.url))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read(&partial).unwrap() == bytes);
}

#[test]
fn the_same_bytes_are_stored_once_and_go_with_their_last_asset() {
    let (daemon, key, client, project) = setup();
    let bytes = png(600, 400);
    let sha256 = sha256_hex(&bytes);
    let first = upload_ok(&client, &project, "logo.png", &bytes);
    let second = upload_ok(&client, &project, "logo-copy.png", &bytes);
    let other = upload_ok(&client, &project, "other.pdf", &pdf());
    assert_ne!(first["id"], second["id"]);
    assert_eq!(first["sha256"], second["sha256"]);
    assert_eq!(
        stored_blobs(&daemon).len(),
        2,
        "one file for the two uploads of the logo"
    );

    let (first, second) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    wait_for_thumbnails(&client, first, "ready");
    assert_eq!(
        wait_for_thumbnails(&client, second, "ready")["thumbnail_state"],
        "ready"
    );
    assert_eq!(
        stored_files(&daemon).len(),
        2 + 2,
        "two blobs and the logo's two thumbnails"
    );

    // Deleting one copy keeps the bytes the other still names.
    assert_eq!(
        client
            .delete(&format!("/api/v1/assets/{first}"), "*")
            .status,
        204
    );
    assert_error(
        &client.get(&format!("/api/v1/assets/{first}")),
        404,
        "not_found",
    );
    let kept = curl(
        &daemon,
        &key,
        &[],
        &format!("/api/v1/assets/{second}/content"),
    );
    assert!(kept.status == 200 && kept.body == bytes);
    assert_eq!(
        curl(&daemon, &key, &[], &format!("/api/v1/blobs/{sha256}")).status,
        200
    );
    assert!(stored_blobs(&daemon).contains(&sha256));
    let thumbnail = curl(
        &daemon,
        &key,
        &[],
        &format!("/api/v1/assets/{second}/thumbnails/256"),
    );
    assert_eq!(thumbnail.status, 200);

    // The last one takes them along, thumbnails included; the other asset is untouched.
    assert_eq!(
        client
            .delete(&format!("/api/v1/assets/{second}"), "*")
            .status,
        204
    );
    assert!(!stored_blobs(&daemon).contains(&sha256));
    assert_eq!(stored_files(&daemon).len(), 1);
    assert_error(
        &client.get(&format!("/api/v1/blobs/{sha256}")),
        404,
        "not_found",
    );
    let other = other["id"].as_str().unwrap();
    assert!(
        curl(
            &daemon,
            &key,
            &[],
            &format!("/api/v1/assets/{other}/content")
        )
        .body
            == pdf()
    );

    // A project holding assets is not deleted with them.
    assert_error(
        &client.delete(&format!("/api/v1/projects/{project}"), "*"),
        409,
        "conflict",
    );
}

#[test]
fn concurrent_uploads_and_deletes_of_the_same_bytes_never_lose_them() {
    let (daemon, key, client, project) = setup();
    let bytes = pdf_like(9, 1 << 20);
    let sha256 = sha256_hex(&bytes);

    std::thread::scope(|scope| {
        for worker in 0..6 {
            let (client, project, bytes, daemon, key) = (&client, &project, &bytes, &daemon, &key);
            scope.spawn(move || {
                for round in 0..5 {
                    let asset =
                        upload_ok(client, project, &format!("w{worker}r{round}.pdf"), bytes);
                    let id = asset["id"].as_str().unwrap();
                    // Other workers are deleting their copies meanwhile: ours must survive.
                    let content = curl(daemon, key, &[], &format!("/api/v1/assets/{id}/content"));
                    assert_eq!(content.status, 200, "worker {worker} round {round}");
                    assert!(content.body == *bytes, "worker {worker} round {round}");
                    assert_eq!(
                        client.delete(&format!("/api/v1/assets/{id}"), "*").status,
                        204
                    );
                }
            });
        }
    });
    assert!(
        stored_blobs(&daemon).is_empty(),
        "the last delete collects the bytes"
    );

    // Uploaded all at once, and kept: one file.
    std::thread::scope(|scope| {
        for worker in 0..6 {
            let (client, project, bytes) = (&client, &project, &bytes);
            scope.spawn(move || upload_ok(client, project, &format!("c{worker}.pdf"), bytes));
        }
    });
    assert_eq!(stored_blobs(&daemon), BTreeSet::from([sha256]));
    let listed = client
        .get(&format!("/api/v1/projects/{project}/assets"))
        .json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 6);
}

#[test]
fn kill_9_during_an_upload_leaves_no_partial_file_and_the_daemon_restarts_clean() {
    let (mut daemon, key, client, project) = setup();
    let total: usize = 64 << 20;
    let mut head = mp4();
    let body_start = head.len();
    head.extend(filler(11, (1 << 20) - body_start));

    let mut stream = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    write!(
        stream,
        "POST /api/v1/projects/{project}/assets?filename=slow.mp4 HTTP/1.1\r\n\
         Host: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n"
    )
    .unwrap();
    stream.write_all(&head).unwrap();
    stream.flush().unwrap();

    // Until the daemon has written part of it to its temporary file.
    let tmp = assets_dir(&daemon).join("tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    let receiving = loop {
        let sizes: Vec<u64> = std::fs::read_dir(&tmp)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.metadata().ok().map(|meta| meta.len()))
            .collect();
        if sizes.iter().any(|size| *size > 0) || Instant::now() > deadline {
            break sizes;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !receiving.is_empty(),
        "no upload in progress under {}",
        tmp.display()
    );
    daemon.kill();
    drop(stream);

    assert!(
        stored_files(&daemon).is_empty(),
        "a file got a final name: {:?}",
        stored_files(&daemon)
    );
    daemon.spawn();
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "the restart left {left:?} in tmp/");
    assert!(daemon.logs().contains("removed unfinished uploads"));

    let list = client
        .get(&format!("/api/v1/projects/{project}/assets"))
        .json();
    assert_eq!(
        list["items"],
        serde_json::json!([]),
        "no asset for the cut upload"
    );
    let asset = upload_ok(&client, &project, "whole.mp4", &mp4());
    assert_eq!(
        stored_blobs(&daemon),
        BTreeSet::from([asset["sha256"].as_str().unwrap().to_string()])
    );
}

/// A PNG whose header claims `width` × `height` pixels, with a tiny, valid zlib stream.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for byte in bytes {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut checked = kind.to_vec();
        checked.extend_from_slice(data);
        out.extend_from_slice(&checked);
        out.extend_from_slice(&crc32(&checked).to_be_bytes());
    }
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
    // zlib: one stored block of 16 zero bytes, then its Adler-32 (1 for all zeros... plus len).
    let mut zlib = vec![0x78, 0x01, 0x01, 16, 0, !16, 0xff];
    zlib.extend_from_slice(&[0; 16]);
    zlib.extend_from_slice(&((16u32 << 16) | 1).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn thumbnails_are_made_and_bombs_fail_their_asset_only() {
    let (daemon, key, client, project) = setup();

    let photo = upload_ok(&client, &project, "wide.png", &png(2000, 1000));
    let id = photo["id"].as_str().unwrap();
    assert!(["pending", "ready"].contains(&photo["thumbnail_state"].as_str().unwrap()));
    assert_eq!(
        (&photo["width"], &photo["height"]),
        (&Value::from(2000), &Value::from(1000))
    );
    assert_eq!(
        wait_for_thumbnails(&client, id, "ready")["thumbnail_state"],
        "ready"
    );
    for (size, (width, height)) in [(256, (256, 128)), (1024, (1024, 512))] {
        let path = format!("/api/v1/assets/{id}/thumbnails/{size}");
        let thumbnail = curl(&daemon, &key, &[], &path);
        assert_eq!(thumbnail.status, 200, "{size}");
        assert_eq!(thumbnail.header("Content-Type"), Some("image/png"));
        let etag = thumbnail.header("ETag").unwrap().to_string();
        let image = image::load_from_memory_with_format(&thumbnail.body, ImageFormat::Png).unwrap();
        assert_eq!((image.width(), image.height()), (width, height), "{size}");
        let again = curl(
            &daemon,
            &key,
            &["-H", &format!("If-None-Match: {etag}")],
            &path,
        );
        assert_eq!(again.status, 304);
    }
    assert_error(
        &client.get(&format!("/api/v1/assets/{id}/thumbnails/300")),
        400,
        "invalid_thumbnail_size",
    );
    // Smaller than a size: the thumbnail is the image's own size, never enlarged.
    let small = upload_ok(&client, &project, "small.jpg", &jpeg(100, 50));
    let small = small["id"].as_str().unwrap();
    wait_for_thumbnails(&client, small, "ready");
    let thumbnail = curl(
        &daemon,
        &key,
        &[],
        &format!("/api/v1/assets/{small}/thumbnails/1024"),
    );
    let image = image::load_from_memory(&thumbnail.body).unwrap();
    assert_eq!((image.width(), image.height()), (100, 50));

    // A file of a few dozen bytes claiming 100000 × 100000 pixels (40 GB decoded).
    let bomb_bytes = png_claiming(100_000, 100_000);
    assert!(bomb_bytes.len() < 100);
    let bomb = upload_ok(&client, &project, "bomb.png", &bomb_bytes);
    let bomb_id = bomb["id"].as_str().unwrap();
    let bomb = wait_for_thumbnails(&client, bomb_id, "failed");
    assert_eq!(bomb["thumbnail_state"], "failed", "{bomb}");
    assert!(
        bomb["thumbnail_error"].as_str().unwrap().contains("pixels"),
        "{bomb}"
    );
    assert_error(
        &client.get(&format!("/api/v1/assets/{bomb_id}/thumbnails/256")),
        404,
        "thumbnail_failed",
    );
    // A corrupt image: right magic, garbage after it.
    let mut corrupt = b"\xff\xd8\xff\xe0".to_vec();
    corrupt.extend(filler(12, 5000));
    let corrupt = upload_ok(&client, &project, "corrupt.jpg", &corrupt);
    let corrupt = wait_for_thumbnails(&client, corrupt["id"].as_str().unwrap(), "failed");
    assert_eq!(corrupt["thumbnail_state"], "failed", "{corrupt}");

    // Types without thumbnails say so.
    let vector = upload_ok(&client, &project, "mark.svg", &svg());
    assert_eq!(vector["thumbnail_state"], "unsupported");
    let vector = vector["id"].as_str().unwrap();
    assert_error(
        &client.get(&format!("/api/v1/assets/{vector}/thumbnails/256")),
        404,
        "no_thumbnail",
    );

    // The daemon is still well, and still makes thumbnails.
    assert_eq!(Client::anonymous(&daemon.url).get("/health").status, 200);
    let after = upload_ok(&client, &project, "after.webp", &webp(512, 512));
    let after = wait_for_thumbnails(&client, after["id"].as_str().unwrap(), "ready");
    assert_eq!(after["thumbnail_state"], "ready");
}

#[test]
fn pending_thumbnails_answer_thumbnail_pending_and_resume_after_a_restart() {
    let (mut daemon, _key, client, project) = setup();
    // Large enough that its thumbnails take a moment on any machine.
    let asset = upload_ok(&client, &project, "huge.png", &png(4000, 3000));
    let id = asset["id"].as_str().unwrap().to_string();
    let first = client.get(&format!("/api/v1/assets/{id}/thumbnails/256"));
    if first.status == 404 {
        assert_error(&first, 404, "thumbnail_pending");
        assert_eq!(first.header("Retry-After"), Some("1"));
    }
    daemon.kill();
    daemon.spawn();
    assert_eq!(
        wait_for_thumbnails(&client, &id, "ready")["thumbnail_state"],
        "ready"
    );
    assert_eq!(
        client
            .get(&format!("/api/v1/assets/{id}/thumbnails/256"))
            .status,
        200
    );
}

#[test]
fn wrong_types_are_refused_with_415_and_oversized_files_with_413() {
    let (daemon, key, client, project) = setup_with(&[("NEXUS_ASSETS__MAX_BYTES__PNG", "10000")]);

    for (what, bytes) in [
        (
            "a Windows program",
            b"MZ\x90\x00\x03\x00\x00\x00\x04\x00".to_vec(),
        ),
        ("plain text", b"hello, world\n".to_vec()),
        ("HTML", b"<!DOCTYPE html><html><svg></svg></html>".to_vec()),
        ("a ZIP", b"PK\x03\x04\x14\x00\x00\x00".to_vec()),
        (
            "Matroska",
            b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska".to_vec(),
        ),
    ] {
        let reply = upload(&client, &project, "", &bytes);
        assert_error(&reply, 415, "unsupported_media_type");
        assert!(
            reply.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("png"),
            "{what}"
        );
    }
    assert_error(&upload(&client, &project, "", b""), 400, "empty_body");

    // Over the PNG limit: refused from Content-Length, and when streamed without one.
    let big = png(200, 200);
    assert!(big.len() > 10_000);
    let reply = upload(&client, &project, "", &big);
    assert_error(&reply, 413, "payload_too_large");
    assert!(reply.body.contains("image/png"), "{}", reply.body);
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("big.png");
    std::fs::write(&file, &big).unwrap();
    let chunked = curl(
        &daemon,
        &key,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", file.display()),
        ],
        &format!("/api/v1/projects/{project}/assets"),
    );
    assert_eq!(chunked.status, 413);
    let form = curl(
        &daemon,
        &key,
        &["-F", &format!("file=@{}", file.display())],
        &format!("/api/v1/projects/{project}/assets"),
    );
    assert_eq!(form.status, 413);
    // Other types keep their own limits.
    assert_eq!(
        upload(&client, &project, "", &pdf_like(1, 50_000)).status,
        201
    );
    assert!(
        tmp_is_empty(&daemon),
        "refused uploads leave nothing behind"
    );

    // Malformed forms.
    let no_file = curl(
        &daemon,
        &key,
        &["-F", "tags=x"],
        &format!("/api/v1/projects/{project}/assets"),
    );
    assert_eq!(no_file.status, 400);
    let bad_field = curl(
        &daemon,
        &key,
        &[
            "-F",
            "colour=red",
            "-F",
            &format!("file=@{}", file.display()),
        ],
        &format!("/api/v1/projects/{project}/assets"),
    );
    assert_eq!(bad_field.status, 400);
    let reply = upload(&client, &project, "?filename=a&filename=b", &pdf());
    assert_error(&reply, 400, "repeated_parameter");
    let reply = upload(
        &client,
        &project,
        &format!("?tags={}", "t,".repeat(40)),
        &pdf(),
    );
    assert_eq!(reply.status, 201, "repeated tags count once");
    let many: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let reply = upload(
        &client,
        &project,
        &format!("?tags={}", many.join(",")),
        &pdf(),
    );
    assert_error(&reply, 422, "invalid_field");
}

fn tmp_is_empty(daemon: &Daemon) -> bool {
    // Temporary files are removed when a refused upload's request ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let empty = std::fs::read_dir(assets_dir(daemon).join("tmp"))
            .unwrap()
            .next()
            .is_none();
        if empty || Instant::now() > deadline {
            return empty;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn svg_is_served_sandboxed_and_as_an_attachment_unless_configured() {
    for (inline, disposition) in [("false", "attachment"), ("true", "inline")] {
        let (daemon, key, client, project) = setup_with(&[("NEXUS_ASSETS__SVG_INLINE", inline)]);
        let asset = upload_ok(&client, &project, "mark.svg", &svg());
        let (id, sha256) = (
            asset["id"].as_str().unwrap(),
            asset["sha256"].as_str().unwrap(),
        );

        let content = curl(&daemon, &key, &[], &format!("/api/v1/assets/{id}/content"));
        assert_eq!(content.header("Content-Type"), Some("image/svg+xml"));
        assert_eq!(content.header("Content-Security-Policy"), Some(SVG_CSP));
        assert_eq!(
            content.header("Content-Disposition"),
            Some(&*format!(
                "{disposition}; filename=\"mark.svg\"; filename*=UTF-8''mark.svg"
            ))
        );
        assert_eq!(content.header("X-Content-Type-Options"), Some("nosniff"));
        let blob = curl(&daemon, &key, &[], &format!("/api/v1/blobs/{sha256}"));
        assert_eq!(blob.header("Content-Security-Policy"), Some(SVG_CSP));
        assert_eq!(blob.header("Content-Disposition"), Some(disposition));

        // Everything else keeps the API's own policy.
        let raster = upload_ok(&client, &project, "a.png", &png(4, 4));
        let id = raster["id"].as_str().unwrap();
        let content = curl(&daemon, &key, &[], &format!("/api/v1/assets/{id}/content"));
        let policy = content.header("Content-Security-Policy").unwrap();
        assert!(
            policy.starts_with("default-src 'none'; frame-ancestors"),
            "{policy}"
        );
    }
}

#[test]
fn lists_page_with_cursors_and_filter_by_type_and_tag() {
    let (_daemon, _key, client, project) = setup();
    let upload_tagged = |name: &str, tags: &str, bytes: &[u8]| {
        let reply = upload(
            &client,
            &project,
            &format!("?filename={name}&tags={tags}"),
            bytes,
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()["id"].as_str().unwrap().to_string()
    };
    let ids = [
        upload_tagged("a.png", "logo", &png(10, 10)),
        upload_tagged("b.png", "logo,dark", &png(11, 10)),
        upload_tagged("c.svg", "logo,icon", &svg()),
        upload_tagged("d.ttf", "type", &ttf()),
        upload_tagged("e.pdf", "", &pdf()),
    ];
    // Another project's assets never show.
    let other = client.create_project("Other");
    assert_eq!(
        upload(&client, &other, "?tags=logo", &png(3, 3)).status,
        201
    );

    let list = |query: &str| {
        let reply = client.get(&format!("/api/v1/projects/{project}/assets{query}"));
        assert_eq!(reply.status, 200, "{query}: {}", reply.body);
        reply.json()
    };
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["file_name"].as_str().unwrap().to_string())
            .collect()
    };

    // Pages of two, oldest first, each cursor continuing the last.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_string();
    loop {
        let page = list(&query);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    assert_eq!(names(&list("?type=image")), ["a.png", "b.png", "c.svg"]);
    assert_eq!(names(&list("?type=image/png")), ["a.png", "b.png"]);
    assert_eq!(names(&list("?type=IMAGE/SVG%2BXML")), ["c.svg"]);
    assert_eq!(names(&list("?type=font")), ["d.ttf"]);
    assert_eq!(names(&list("?type=video")), Vec::<String>::new());
    assert_eq!(names(&list("?tag=logo")), ["a.png", "b.png", "c.svg"]);
    assert_eq!(names(&list("?tag=icon&type=image")), ["c.svg"]);
    assert_eq!(names(&list("?tag=logo&limit=1&type=image/png")), ["a.png"]);
    let filtered = list("?tag=logo&limit=1");
    let cursor = filtered["next_cursor"].as_str().unwrap();
    assert_eq!(
        names(&list(&format!("?tag=logo&limit=2&cursor={cursor}"))),
        ["b.png", "c.svg"]
    );

    let bad = |query: &str| client.get(&format!("/api/v1/projects/{project}/assets{query}"));
    assert_error(&bad("?cursor=nope"), 400, "invalid_cursor");
    assert_error(&bad("?type=image&type=font"), 400, "repeated_parameter");
    assert_error(&bad("?type=%25"), 400, "invalid_type");
    assert_error(&bad("?limit=0"), 400, "invalid_limit");
    let missing = "00000000-0000-4000-8000-000000000000";
    assert_error(
        &client.get(&format!("/api/v1/projects/{missing}/assets")),
        404,
        "not_found",
    );
}

#[test]
fn path_traversal_is_refused_on_every_path_parameter() {
    let (daemon, key, client, project) = setup();
    let id = upload_ok(&client, &project, "a.png", &png(8, 8))["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for_thumbnails(&client, &id, "ready");
    let attacks = [
        "../../../../../../etc/passwd",
        "..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%2e%2e",
        "..",
        "%2fetc%2fpasswd",
        "..%5c..%5cetc%5cpasswd",
        "%252e%252e%252fetc%252fpasswd",
    ];
    let mut paths = Vec::new();
    for attack in attacks {
        paths.extend([
            format!("/api/v1/assets/{attack}"),
            format!("/api/v1/assets/{attack}/content"),
            format!("/api/v1/assets/{attack}/thumbnails/256"),
            format!("/api/v1/assets/{id}/thumbnails/{attack}"),
            format!("/api/v1/blobs/{attack}"),
            format!("/api/v1/projects/{attack}/assets"),
        ]);
    }
    paths.push("//etc/passwd".to_string());
    paths.push("/api/v1/blobs//etc/passwd".to_string());
    for path in &paths {
        let answer = curl(&daemon, &key, &[], path);
        let body = String::from_utf8_lossy(&answer.body);
        assert!(
            (400..500).contains(&answer.status),
            "{path}: {} {body}",
            answer.status
        );
        assert!(!body.contains("root:"), "{path} leaked a file");
        let error: Value = serde_json::from_str(&body)
            .unwrap_or_else(|_| panic!("{path}: not a JSON error: {body}"));
        assert!(error["error"]["code"].is_string(), "{path}: {body}");
    }
    let upload = curl(
        &daemon,
        &key,
        &["--data-binary", "%PDF-1.4 x"],
        "/api/v1/projects/..%2f..%2fetc/assets",
    );
    assert_eq!(upload.status, 400);
    assert!(
        stored_blobs(&daemon).len() == 1,
        "nothing was stored by the attempts"
    );
}

/// A web root with an app, a fingerprinted script, a hidden file, and a secret beside the
/// root that a symbolic link inside it points to.
fn web_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), "root:x:0:0:the secret").unwrap();
    let root = dir.path().join("site");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(
        root.join("index.html"),
        "<!doctype html><title>Nexus</title>",
    )
    .unwrap();
    std::fs::write(root.join("app.3f9a2c1b.js"), "console.log('app')").unwrap();
    std::fs::write(root.join("robots.txt"), "User-agent: *").unwrap();
    std::fs::write(root.join(".env"), "root:SECRET=1").unwrap();
    std::fs::write(root.join("docs").join("index.html"), "<p>docs</p>").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
    (dir, root)
}

#[test]
fn the_web_root_serves_the_app_and_leaves_the_api_alone() {
    let (_dir, root) = web_root();
    let (daemon, key, _client, _project) =
        setup_with(&[("NEXUS_WEB__ROOT", root.to_str().unwrap())]);
    let index = "<!doctype html><title>Nexus</title>";

    let home = curl(&daemon, &key, &[], "/");
    assert_eq!(home.status, 200);
    assert_eq!(String::from_utf8_lossy(&home.body), index);
    assert_eq!(home.header("Cache-Control"), Some("no-cache"));
    assert!(
        home.header("Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        home.header("Content-Security-Policy")
            .unwrap()
            .starts_with("default-src 'self'")
    );
    let etag = home.header("ETag").unwrap().to_string();
    assert_eq!(
        curl(
            &daemon,
            &key,
            &["-H", &format!("If-None-Match: {etag}")],
            "/"
        )
        .status,
        304
    );

    let script = curl(&daemon, &key, &[], "/app.3f9a2c1b.js");
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("Cache-Control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(
        script
            .header("Content-Type")
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(
        curl(&daemon, &key, &[], "/robots.txt").header("Cache-Control"),
        Some("no-cache")
    );
    assert_eq!(
        String::from_utf8_lossy(&curl(&daemon, &key, &[], "/docs/").body),
        "<p>docs</p>"
    );

    // The app's own routes get index.html; missing files do not.
    for route in ["/projects/42", "/login", "/a/b/c"] {
        let page = curl(&daemon, &key, &[], route);
        assert_eq!(page.status, 200, "{route}");
        assert_eq!(String::from_utf8_lossy(&page.body), index, "{route}");
        assert_eq!(page.header("Cache-Control"), Some("no-cache"));
    }
    let missing = curl(&daemon, &key, &[], "/app.00000000.js");
    assert_eq!(missing.status, 404);

    // The API keeps its JSON answers.
    for (method, path, status, code) in [
        ("GET", "/api/v1/nope", 404, "not_found"),
        ("GET", "/api", 404, "not_found"),
        ("GET", "/v1/nope", 404, "not_found"),
        ("POST", "/api/v1/nope", 404, "not_found"),
        ("GET", "/v1/embeddings", 405, "method_not_allowed"),
    ] {
        let answer = curl(&daemon, &key, &["-X", method], path);
        assert_eq!(answer.status, status, "{method} {path}");
        let error: Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(error["error"]["code"], code, "{method} {path}");
    }
    assert_eq!(curl(&daemon, &key, &[], "/api/v1/projects").status, 200);
    assert_eq!(curl(&daemon, &key, &[], "/health").status, 200);

    // Traversal, encoded or not, absolute paths, hidden files and links out of the root.
    for path in [
        "/../secret.txt",
        "/../../../../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/..%2fsecret.txt",
        "/..%5csecret.txt",
        "/docs/../../secret.txt",
        "/%2fetc%2fpasswd",
        "//etc/passwd",
        "/.env",
        "/%2eenv",
        "/leak.txt",
        "/up/secret.txt",
        "/C:%5cwindows",
    ] {
        let answer = curl(&daemon, &key, &[], path);
        let body = String::from_utf8_lossy(&answer.body);
        assert!(
            !body.contains("root:"),
            "{path} leaked: {} {body}",
            answer.status
        );
        assert!(
            answer.status >= 400 || body == index,
            "{path}: {} {body}",
            answer.status
        );
    }
}
