//! The durable spool: where ingest keeps a webhook the broker cannot take
//! right now, so that a provider that never retries still gets its 202.
//!
//! Webhooks are appended to segment files in `CALLSYNC_SPOOL_DIR` and
//! fsynced before the 202. A background task replays closed segments to the
//! broker in order, with confirms, once publishing works again, and deletes a
//! segment only after every entry in it was confirmed. A crash during replay
//! republishes the segment from its start: the worker's ledger turns those
//! copies into duplicates, so nothing is lost and nothing is applied twice.
//!
//! Frame: `b"CSP1" | u32 length | u32 CRC-32 | payload`, little-endian. A
//! torn frame at the end of a segment (a crash mid-append, which was never
//! answered 202) is detected by its length or CRC and dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use callsync_shared::telemetry::Chain;
use callsync_shared::time::{from_unix_ms, unix_ms};
use callsync_shared::{CallId, Source};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::publisher::{OutgoingReport, Publisher};

const MAGIC: &[u8; 4] = b"CSP1";
const HEADER: usize = 12;

/// Why a report could not be spooled; the webhook is then answered 503.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool is full ({max_bytes} bytes, CALLSYNC_SPOOL_MAX_BYTES)")]
    Full { max_bytes: u64 },
    #[error("spool write failed")]
    Io(#[from] io::Error),
}

/// The spool of one ingest process.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in all segment files.
    size: AtomicU64,
    /// Entries not yet confirmed by the broker (appended minus replayed).
    entries: AtomicU64,
    active: Mutex<Active>,
    appended: Notify,
}

#[derive(Debug)]
struct Active {
    seq: u64,
    file: File,
    bytes: u64,
}

impl Spool {
    /// Opens (creating) the spool directory. Segments left by a previous run
    /// are kept and replayed first.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let segments = segments(dir)?;
        let mut size = 0;
        let mut entries = 0;
        for (_, path) in &segments {
            size += fs::metadata(path)?.len();
            entries += read_frames(path)?.len() as u64;
        }
        let seq = segments.last().map_or(1, |(seq, _)| seq + 1);
        let file = open_segment(dir, seq)?;
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            size: AtomicU64::new(size),
            entries: AtomicU64::new(entries),
            active: Mutex::new(Active {
                seq,
                file,
                bytes: 0,
            }),
            appended: Notify::new(),
        })
    }

    /// Entries waiting for the broker.
    pub fn depth(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// Appends a report and fsyncs it. Only after `Ok` may the webhook be
    /// answered 202.
    pub async fn append(self: &Arc<Self>, report: &OutgoingReport) -> Result<(), SpoolError> {
        let frame = encode(report);
        let spool = Arc::clone(self);
        tokio::task::spawn_blocking(move || spool.append_blocking(&frame))
            .await
            .map_err(|e| SpoolError::Io(io::Error::other(e)))??;
        self.appended.notify_one();
        Ok(())
    }

    fn append_blocking(&self, frame: &[u8]) -> Result<(), SpoolError> {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        let len = frame.len() as u64;
        if self.size.load(Ordering::Relaxed) + len > self.max_bytes {
            return Err(SpoolError::Full {
                max_bytes: self.max_bytes,
            });
        }
        // Durable before the provider hears "accepted".
        let written = active
            .file
            .write_all(frame)
            .and_then(|()| active.file.sync_data());
        if let Err(error) = written {
            // Cut the partial frame off: a later, acknowledged frame must
            // never sit behind a torn one, where replay would stop. If even
            // that fails, continue in a fresh segment.
            if active.file.set_len(active.bytes).is_err() {
                let seq = active.seq + 1;
                if let Ok(file) = open_segment(&self.dir, seq) {
                    *active = Active {
                        seq,
                        file,
                        bytes: 0,
                    };
                }
            }
            return Err(error.into());
        }
        active.bytes += len;
        self.size.fetch_add(len, Ordering::Relaxed);
        self.entries.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("callsync_ingest_spool_depth").set(self.depth() as f64);
        Ok(())
    }

    /// Closes the active segment if it holds anything and returns every
    /// closed segment, oldest first.
    fn rotate(&self) -> io::Result<Vec<(u64, PathBuf)>> {
        {
            let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
            if active.bytes > 0 {
                let seq = active.seq + 1;
                *active = Active {
                    seq,
                    file: open_segment(&self.dir, seq)?,
                    bytes: 0,
                };
            }
        }
        let active_seq = self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seq;
        Ok(segments(&self.dir)?
            .into_iter()
            .filter(|(seq, _)| *seq < active_seq)
            .collect())
    }

    /// Replays spooled reports whenever the publisher is ready, until `stop`.
    pub async fn replay(self: Arc<Self>, publisher: Publisher, stop: CancellationToken) {
        // Frames of the current segment already confirmed in this process.
        let mut progress: Option<(u64, usize)> = None;
        loop {
            tokio::select! {
                () = self.appended.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = stop.cancelled() => return,
            }
            if stop.is_cancelled() {
                return;
            }
            if self.depth() == 0 || !publisher.is_ready() {
                continue;
            }
            let segments = match self.rotate() {
                Ok(segments) => segments,
                Err(error) => {
                    tracing::error!(%error, "cannot rotate the spool");
                    continue;
                }
            };
            for (seq, path) in segments {
                match self
                    .replay_segment(seq, &path, &publisher, &mut progress)
                    .await
                {
                    Ok(()) => {}
                    Err(error) => {
                        tracing::warn!(%error, segment = %path.display(), "spool replay paused");
                        break;
                    }
                }
            }
        }
    }

    async fn replay_segment(
        &self,
        seq: u64,
        path: &Path,
        publisher: &Publisher,
        progress: &mut Option<(u64, usize)>,
    ) -> Result<(), String> {
        let frames = read_frames(path).map_err(|e| e.to_string())?;
        let skip = match progress {
            Some((s, done)) if *s == seq => *done,
            _ => 0,
        };
        for (index, report) in frames.iter().enumerate().skip(skip) {
            publisher
                .publish(report)
                .await
                .map_err(|e| Chain(&e).to_string())?;
            *progress = Some((seq, index + 1));
            let _ = self
                .entries
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
            metrics::gauge!("callsync_ingest_spool_depth").set(self.depth() as f64);
        }
        let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(path).map_err(|e| e.to_string())?;
        self.size.fetch_sub(
            len.min(self.size.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        *progress = None;
        tracing::info!(replayed = frames.len() - skip, segment = %path.display(), "spooled reports delivered to the broker");
        Ok(())
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("spool-{seq:020}.log"))
}

fn open_segment(dir: &Path, seq: u64) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, seq))
}

/// Segment files in `dir`, oldest first.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("spool-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            found.push((seq, path));
        }
    }
    found.sort();
    Ok(found)
}

fn encode(report: &OutgoingReport) -> Vec<u8> {
    let mut payload = Vec::with_capacity(report.body.len() + 128);
    put_str16(&mut payload, &report.message_id);
    put_str16(&mut payload, report.source.as_str());
    put_str16(&mut payload, report.call_id.as_str());
    payload.extend_from_slice(&unix_ms(report.received_at).to_le_bytes());
    payload.extend_from_slice(&report.body);

    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

/// Every intact frame of a segment; stops at a torn or corrupt frame.
fn read_frames(path: &Path) -> io::Result<Vec<OutgoingReport>> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut reports = Vec::new();
    let mut at = 0;
    while data.len() >= at + HEADER {
        if &data[at..at + 4] != MAGIC {
            break;
        }
        let len =
            u32::from_le_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]) as usize;
        let crc = u32::from_le_bytes([data[at + 8], data[at + 9], data[at + 10], data[at + 11]]);
        let Some(payload) = data.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match decode(payload) {
            Some(report) => reports.push(report),
            None => break,
        }
        at += HEADER + len;
    }
    if at < data.len() {
        tracing::warn!(segment = %path.display(), dropped_bytes = data.len() - at, "torn frame at the end of a spool segment (a crash during an append that was never acknowledged)");
    }
    Ok(reports)
}

fn decode(payload: &[u8]) -> Option<OutgoingReport> {
    let mut at = 0;
    let mut take_str = || {
        let len = usize::from(u16::from_le_bytes([
            *payload.get(at)?,
            *payload.get(at + 1)?,
        ]));
        let s = std::str::from_utf8(payload.get(at + 2..at + 2 + len)?)
            .ok()?
            .to_owned();
        at += 2 + len;
        Some(s)
    };
    let message_id = take_str()?;
    let source: Source = take_str()?.parse().ok()?;
    let call_id = CallId::new(&take_str()?)?;
    let ms = i64::from_le_bytes(payload.get(at..at + 8)?.try_into().ok()?);
    let received_at = from_unix_ms(ms)?;
    Some(OutgoingReport {
        message_id,
        source,
        call_id,
        received_at,
        body: Bytes::copy_from_slice(payload.get(at + 8..)?),
    })
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn report(n: u32) -> OutgoingReport {
        OutgoingReport {
            message_id: format!("m-{n}"),
            source: Source::Postcall,
            call_id: CallId::new(&format!("call-{n}")).unwrap(),
            received_at: OffsetDateTime::from_unix_timestamp(1_765_627_530).unwrap(),
            body: Bytes::from(format!("{{\"callId\":\"call-{n}\"}}")),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("callsync-spool-{name}-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn appended_reports_survive_a_restart_in_order() {
        let dir = temp_dir("restart");
        let spool = Arc::new(Spool::open(&dir, 1 << 20).unwrap());
        for n in 0..3 {
            spool.append(&report(n)).await.unwrap();
        }
        drop(spool);
        let reopened = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(reopened.depth(), 3);
        let segments = reopened.rotate().unwrap();
        let frames: Vec<_> = segments
            .iter()
            .flat_map(|(_, p)| read_frames(p).unwrap())
            .collect();
        let ids: Vec<_> = frames.iter().map(|r| r.call_id.to_string()).collect();
        assert_eq!(ids, ["call-0", "call-1", "call-2"]);
        assert_eq!(frames[1].body, report(1).body);
        assert_eq!(frames[1].received_at, report(1).received_at);
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_full_spool_refuses_instead_of_growing() {
        let dir = temp_dir("full");
        let spool = Arc::new(Spool::open(&dir, 100).unwrap());
        spool.append(&report(1)).await.unwrap();
        let err = spool.append(&report(2)).await.unwrap_err();
        assert!(matches!(err, SpoolError::Full { max_bytes: 100 }), "{err}");
        assert_eq!(spool.depth(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_torn_last_frame_is_dropped_and_the_rest_kept() {
        let dir = temp_dir("torn");
        let spool = Arc::new(Spool::open(&dir, 1 << 20).unwrap());
        spool.append(&report(1)).await.unwrap();
        spool.append(&report(2)).await.unwrap();
        let (_, path) = spool.rotate().unwrap().pop().unwrap();
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let frames = read_frames(&path).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].call_id.as_str(), "call-1");
        fs::remove_dir_all(dir).unwrap();
    }
}
