//! `telar-bench-objects [--quick]`: moves one file (1 GiB, 256 MiB with `--quick`) up and down
//! through signed links served by a telar service (local backend, streamed both ways), and, as
//! the reference in the same run, writes and reads the same bytes as a plain file on the same
//! disk. Ends with `RESULT name=objects …` (upload throughput against the plain write).

use std::time::{Duration, Instant};

use futures::StreamExt;
use telar_objects::{Objects, ObjectsConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CHUNK: usize = 256 * 1024;

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let quick = std::env::args().any(|a| a == "--quick");
    let size: u64 = if quick { 256 << 20 } else { 1 << 30 };
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let objects = Objects::open(&ObjectsConfig {
        dir: dir.path().join("objects").display().to_string(),
        public_url: base,
        url_secret: "bench-secret-bench-secret".into(),
        max_object_bytes: size,
        ..ObjectsConfig::default()
    })?;
    let kit = telar_kit::KitConfig {
        request_timeout_ms: 600_000,
        ..telar_kit::KitConfig::default()
    };
    let service = telar_kit::Service::new("files")
        .config(kit)
        .routes(objects.routes());
    tokio::spawn(service.run(listener, std::future::pending()));
    let chunk = bytes::Bytes::from(vec![7u8; CHUNK]);
    let chunks = size / CHUNK as u64;
    let http = reqwest::Client::new();

    // Through signed links.
    let key = Objects::key("bench/file.bin")?;
    let put = objects
        .presign_put(
            &key,
            "application/octet-stream",
            size,
            Duration::from_secs(600),
        )
        .await?;
    let body = {
        let chunk = chunk.clone();
        futures::stream::iter(0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone()))
    };
    let started = Instant::now();
    let response = http
        .put(&put.url)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?;
    let status = response.status();
    response.bytes().await?;
    let upload = started.elapsed();
    if status != 201 {
        return Err(format!("upload answered {status}").into());
    }
    let get = objects
        .presign_get(&key, "application/octet-stream", Duration::from_secs(600))
        .await?;
    let started = Instant::now();
    let mut stream = http.get(&get.url).send().await?.bytes_stream();
    let mut received = 0u64;
    while let Some(part) = stream.next().await {
        received += part?.len() as u64;
    }
    let download = started.elapsed();
    if received != size {
        return Err(format!("downloaded {received} of {size} bytes").into());
    }

    // The reference: the same bytes written and read as a plain file, same chunks, with blocking
    // I/O on a blocking thread (the fastest plain way).
    let path = dir.path().join("plain.bin");
    let (write, read, read_bytes) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        use std::io::{Read, Write};
        let data = vec![7u8; CHUNK];
        let started = Instant::now();
        let mut file = std::fs::File::create(&path)?;
        for _ in 0..chunks {
            file.write_all(&data)?;
        }
        file.flush()?;
        drop(file);
        let write = started.elapsed();
        let started = Instant::now();
        let mut file = std::fs::File::open(&path)?;
        let mut buffer = vec![0u8; CHUNK];
        let mut read_bytes = 0u64;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            read_bytes += n as u64;
        }
        Ok((write, started.elapsed(), read_bytes))
    })
    .await??;

    let (up, down) = (mib_per_s(size, upload), mib_per_s(size, download));
    let (w, r) = (mib_per_s(size, write), mib_per_s(read_bytes, read));
    println!("size {} MiB, chunks of {} KiB", size >> 20, CHUNK >> 10);
    println!(
        "upload   signed link {up:.0} MiB/s   plain file write {w:.0} MiB/s   ratio {:.3}",
        up / w
    );
    println!(
        "download signed link {down:.0} MiB/s   plain file read  {r:.0} MiB/s   ratio {:.3}",
        down / r
    );
    println!(
        "RESULT name=objects value={up:.0} reference={w:.0} ratio={:.3} unit=MiB/s",
        up / w
    );
    Ok(())
}
