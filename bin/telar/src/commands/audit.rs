//! `telar audit verify|export`: the audit service's log, read from its database.

use std::io::Write;
use std::path::Path;

use telar_audit::AuditLog;
use telar_sql::Db;

use crate::cli::AuditCommand;
use crate::commands::CommandError;
use crate::commands::dlq::print_json;
use crate::settings::Settings;

pub async fn run(file: Option<&Path>, command: AuditCommand) -> Result<(), CommandError> {
    let service = match &command {
        AuditCommand::Verify(args) => &args.service,
        AuditCommand::Export(args) => &args.service,
    };
    let settings = Settings::load(file).map_err(|e| CommandError::Usage(e.to_string()))?;
    let db = Db::connect(&settings.database, service)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database of {service}: {e}"))?;
    let log = AuditLog::open(db).await.map_err(runtime)?;
    match command {
        AuditCommand::Verify(args) => {
            let verification = log.verify().await.map_err(runtime)?;
            if args.json {
                print_json(&verification)?;
            } else if let Some(broken) = &verification.first_broken {
                println!(
                    "broken at record {}: {} ({} records verified before it)",
                    broken.seq, broken.reason, verification.records
                );
            } else {
                println!(
                    "ok: {} records, head {}",
                    verification.records, verification.head_hash
                );
            }
            match verification.first_broken {
                Some(broken) => Err(CommandError::Runtime(anyhow::anyhow!(
                    "the audit chain is broken at record {}",
                    broken.seq
                ))),
                None => Ok(()),
            }
        }
        AuditCommand::Export(args) => {
            let mut out: Box<dyn Write> = match &args.output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut after = 0;
            let mut count = 0;
            loop {
                let page = log.page(after, 1000).await.map_err(runtime)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for record in &page {
                    serde_json::to_writer(&mut out, record).map_err(anyhow::Error::from)?;
                    out.write_all(b"\n").map_err(anyhow::Error::from)?;
                    count += 1;
                }
            }
            out.flush().map_err(anyhow::Error::from)?;
            if args.output.is_some() {
                eprintln!("exported {count} records");
            }
            Ok(())
        }
    }
}

fn runtime(error: telar_audit::AuditError) -> CommandError {
    CommandError::Runtime(anyhow::Error::from(error))
}
