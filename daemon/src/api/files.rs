//! Answers with the bytes of a file on disk the way a CDN does: a strong `ETag`,
//! `If-None-Match` (304), one byte range (`Range` → 206, or 416 outside the file; several
//! ranges get the whole file, which HTTP allows), `If-Range`, `Accept-Ranges`, and the body
//! streamed from the file through a window of it, never read into memory.
//!
//! A handler resolves what to serve ([`FileBody`]) and awaits [`FileBody::answer`], which does
//! the file system work; the answer's responder only writes headers. The header values
//! themselves are read by `nexus_formats::http`, which is fuzzed.

use std::io::Seek;
use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use nexus_formats::http::{ByteRange, etag_list_matches, parse_range};
use rocket::http::{ContentType, Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, ReadBuf, Take};

use super::error::ApiError;

/// `Cache-Control` of content named by its hash: it can never change.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Bytes read from a streamed file and sent at a time: the memory a download holds. Each read
/// is a trip to the blocking pool: Rocket's default of 4 KiB held downloads to about 100 MB/s.
const CHUNK_BYTES: usize = 64 << 10;
/// The same for a memory-mapped window, where a read is only a copy.
const MAPPED_CHUNK_BYTES: usize = 256 << 10;

/// The conditional and range headers of a request.
pub struct Preconditions<'r> {
    if_none_match: Option<&'r str>,
    range: Option<&'r str>,
    if_range: Option<&'r str>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Preconditions<'r> {
    type Error = std::convert::Infallible;

    async fn from_request(request: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let headers = request.headers();
        Outcome::Success(Preconditions {
            if_none_match: headers.get_one("If-None-Match"),
            range: headers.get_one("Range"),
            if_range: headers.get_one("If-Range"),
        })
    }
}

/// A file to answer with, and the headers that describe it.
pub struct FileBody {
    pub path: PathBuf,
    pub content_type: ContentType,
    /// A strong entity tag, quoted: `"..."`.
    pub etag: String,
    pub cache_control: String,
    /// More headers for the answer, e.g. `Content-Disposition`.
    pub headers: Vec<(&'static str, String)>,
    /// The file is never written after it got its name (written whole, then renamed into
    /// place), so it may be memory-mapped. Not so for files an operator may edit in place.
    pub immutable: bool,
}

/// The answer to a file request.
pub enum FileAnswer {
    NotModified(FileBody),
    Bytes {
        file: FileBody,
        window: Window,
        /// Set on a 206: `bytes first-last/length`.
        content_range: Option<String>,
    },
}

impl FileBody {
    /// Opens the file and decides the answer the request's headers ask for.
    pub async fn answer(self, conditions: &Preconditions<'_>) -> Result<FileAnswer, ApiError> {
        if conditions
            .if_none_match
            .is_some_and(|header| etag_list_matches(header, &self.etag))
        {
            return Ok(FileAnswer::NotModified(self));
        }

        // A client resuming with `If-Range` gets a part only of the version it already has.
        let range = conditions
            .range
            .filter(|_| {
                conditions
                    .if_range
                    .is_none_or(|validator| validator.trim() == self.etag)
            })
            .map(str::to_owned);
        let (path, mappable) = (self.path.clone(), self.immutable);
        let opened = tokio::task::spawn_blocking(move || open(&path, range.as_deref(), mappable))
            .await
            .map_err(|error| ApiError::internal(format!("opening a file: {error}")))?
            .map_err(|error| match error.kind() {
                // Deleted since its row was read.
                io::ErrorKind::NotFound => ApiError::new(
                    Status::NotFound,
                    "not_found",
                    "the file is no longer stored",
                ),
                _ => ApiError::internal(format!("{}: {error}", self.path.display())),
            })?;

        match opened {
            Opened::Unsatisfiable { length } => Err(ApiError::new(
                Status::RangeNotSatisfiable,
                "range_not_satisfiable",
                format!("the range is outside the file, which has {length} bytes"),
            )
            .with_header("Content-Range", format!("bytes */{length}"))),
            Opened::Window {
                window,
                content_range,
            } => Ok(FileAnswer::Bytes {
                file: self,
                window,
                content_range,
            }),
        }
    }
}

/// What [`open`] found.
enum Opened {
    Unsatisfiable {
        length: u64,
    },
    Window {
        window: Window,
        content_range: Option<String>,
    },
}

/// Opens `path`, resolves the `Range` header against its length, and readies the window to
/// send. All of it on one blocking-pool trip: each trip is a thread hand-off, and at a few
/// per chunk they, not the copying, were what bounded the download rate.
fn open(path: &Path, range: Option<&str>, mappable: bool) -> io::Result<Opened> {
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();

    let (start, end, content_range) = match range.map(|header| parse_range(header, length)) {
        None | Some(ByteRange::Whole) => (0, length, None),
        Some(ByteRange::Part { first, last }) => (
            first,
            last + 1,
            Some(format!("bytes {first}-{last}/{length}")),
        ),
        Some(ByteRange::Unsatisfiable) => return Ok(Opened::Unsatisfiable { length }),
    };

    let window = if mappable && end > start {
        let len = usize::try_from(end - start)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "window too large"))?;
        // SAFETY: a mappable file is never written after it got its name (it is written
        // whole under a temporary name and renamed into place), so the mapping cannot
        // change or shrink under the reader; deleting the file leaves the mapping intact.
        // `populate` faults the pages in here, on the blocking pool, so that reading the
        // window later never waits on the disk on an async worker.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(start)
                .len(len)
                .populate()
                .map(&file)?
        };
        Window::Mapped(io::Cursor::new(map))
    } else {
        file.seek(SeekFrom::Start(start))?;
        Window::Streamed(FileWindow::new(tokio::fs::File::from_std(file), start, end))
    };
    Ok(Opened::Window {
        window,
        content_range,
    })
}

impl<'r> Responder<'r, 'static> for FileAnswer {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut response = Response::build();
        let file = match self {
            FileAnswer::NotModified(file) => {
                response.status(Status::NotModified);
                file
            }
            FileAnswer::Bytes {
                file,
                window,
                content_range,
            } => {
                let length =
                    usize::try_from(window.len()).map_err(|_| Status::InternalServerError)?;
                let chunk_bytes = window.chunk_bytes();
                response
                    .header(file.content_type.clone())
                    .header(Header::new("Accept-Ranges", "bytes"))
                    .sized_body(length, window)
                    .max_chunk_size(chunk_bytes);
                match content_range {
                    Some(range) => response
                        .status(Status::PartialContent)
                        .header(Header::new("Content-Range", range)),
                    None => response.status(Status::Ok),
                };
                file
            }
        };
        response
            .header(Header::new("ETag", file.etag))
            .header(Header::new("Cache-Control", file.cache_control));
        for (name, value) in file.headers {
            response.header(Header::new(name, value));
        }
        response.ok()
    }
}

/// The bytes `start..end` of an open file, read from wherever the file is positioned (the
/// caller seeks to `start`). Seekable within the window, so Rocket may treat it as a sized
/// body; it never needs to, since the size is given.
/// The bytes of an answer: a memory map of the window of an immutable file, or a window
/// of a file read through the blocking pool.
pub enum Window {
    Mapped(io::Cursor<memmap2::Mmap>),
    Streamed(FileWindow),
}

impl Window {
    fn len(&self) -> u64 {
        match self {
            Window::Mapped(cursor) => cursor.get_ref().len() as u64,
            Window::Streamed(window) => window.len(),
        }
    }

    /// Bytes Rocket reads and sends at a time. A mapped window costs only a copy per read,
    /// so it goes in larger pieces; a streamed one holds its chunk in memory for the read.
    fn chunk_bytes(&self) -> usize {
        match self {
            Window::Mapped(_) => MAPPED_CHUNK_BYTES,
            Window::Streamed(_) => CHUNK_BYTES,
        }
    }
}

impl AsyncRead for Window {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Window::Mapped(cursor) => Pin::new(cursor).poll_read(cx, buf),
            Window::Streamed(window) => Pin::new(window).poll_read(cx, buf),
        }
    }
}

impl AsyncSeek for Window {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            Window::Mapped(cursor) => Pin::new(cursor).start_seek(position),
            Window::Streamed(window) => Pin::new(window).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            Window::Mapped(cursor) => Pin::new(cursor).poll_complete(cx),
            Window::Streamed(window) => Pin::new(window).poll_complete(cx),
        }
    }
}

/// The part `start..end` of a file, read through tokio's blocking pool.
pub struct FileWindow {
    inner: Take<tokio::fs::File>,
    start: u64,
    end: u64,
    seeking_to: Option<u64>,
}

impl FileWindow {
    fn new(file: tokio::fs::File, start: u64, end: u64) -> FileWindow {
        FileWindow {
            inner: file.take(end - start),
            start,
            end,
            seeking_to: None,
        }
    }

    fn len(&self) -> u64 {
        self.end - self.start
    }
}

impl AsyncRead for FileWindow {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncSeek for FileWindow {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        let len = this.len() as i128;
        let relative = match position {
            SeekFrom::Start(offset) => i128::from(offset),
            SeekFrom::End(offset) => len + i128::from(offset),
            SeekFrom::Current(offset) => len - i128::from(this.inner.limit()) + i128::from(offset),
        };
        if !(0..=len).contains(&relative) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the window",
            ));
        }
        let target = this.start + relative as u64;
        Pin::new(this.inner.get_mut()).start_seek(SeekFrom::Start(target))?;
        this.seeking_to = Some(target);
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        let position = ready!(Pin::new(this.inner.get_mut()).poll_complete(cx))?;
        if this.seeking_to.take().is_some() {
            this.inner.set_limit(this.end - position);
        }
        Poll::Ready(Ok(position - this.start))
    }
}
