//! `vevor-probe`: read and set the Vevor inverter over its Modbus port.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use probe_kit::{LinkArgs, modbus_call};
use vevor_modbus::map::{self, Item};
use vevor_modbus::{BLOCKS, JsonValue, Value};

#[derive(Debug, Parser)]
#[command(name = "vevor-probe", version, about = "Read and set the Vevor inverter over its Modbus port")]
struct Cli {
    #[command(flatten)]
    link: LinkArgs,
    /// The inverter's Modbus address.
    #[arg(long, global = true, default_value_t = vevor_modbus::DEFAULT_SLAVE)]
    slave: u8,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// All live data and the BMS mirror, scaled, with units.
    Read,
    /// All settings.
    Settings,
    /// One item by name (output_priority, battery_voltage, ...).
    Get {
        /// The item's name.
        name: String,
    },
    /// Write one setting, by name or number (in the item's unit), then read it back.
    Set {
        /// The setting's name (output_priority, charging_priority, max_charging_current, ...).
        name: String,
        /// The value: a name (sbu, pv_only) or a number in the setting's unit (40 for 40 A).
        value: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) if probe_kit::is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vevor-probe: {}", probe_kit::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

struct Session {
    link: link::Link,
    slave: u8,
    timeout: std::time::Duration,
}

impl Session {
    /// Reads `count` registers from `address`.
    fn read(&mut self, address: u16, count: u16) -> anyhow::Result<Vec<u16>> {
        let name = self.link.name().to_owned();
        let pdu = modbus_call(
            &mut self.link,
            self.slave,
            &vevor_modbus::read_request(address, count),
            self.timeout,
        )
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow::anyhow!("{name}: no reply within {:.1} s", self.timeout.as_secs_f64()))?;
        vevor_modbus::parse_read(&pdu, count)
            .with_context(|| format!("{name}: bad reply to reading {address}+{count}"))?
            .map_err(|code| anyhow::anyhow!("{name}: reading {address}+{count} refused: {code}"))
    }

    fn read_item(&mut self, item: &Item) -> anyhow::Result<Value> {
        let regs = self.read(item.address, item.format.registers())?;
        Ok(vevor_modbus::decode(item, &regs))
    }
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let link = cli.link.open().map_err(anyhow::Error::msg)?;
    let mut s = Session { link, slave: cli.slave, timeout: cli.link.timeout() };
    let mut out = io::stdout().lock();
    let code = match &cli.command {
        Cmd::Read | Cmd::Settings => {
            let settings = matches!(cli.command, Cmd::Settings);
            let wanted: Vec<&'static Item> = if settings {
                map::SETTINGS.iter().filter(|i| i.access != map::Access::WriteOnly).collect()
            } else {
                map::LIVE.iter().chain(map::BMS_MIRROR).collect()
            };
            let mut blocks = BTreeMap::new();
            let mut failed = Vec::new();
            for &(start, count) in BLOCKS {
                let needed = wanted.iter().any(|i| i.address >= start && i.address < start + count);
                if !needed {
                    continue;
                }
                match s.read(start, count) {
                    Ok(regs) => {
                        blocks.insert(start, regs);
                    }
                    Err(e) => failed.push(format!("{e:#}")),
                }
            }
            if blocks.is_empty() {
                bail!("{}", failed.join("; "));
            }
            let values: Vec<_> = vevor_modbus::decode_blocks(&blocks)
                .into_iter()
                .filter(|(i, _)| wanted.contains(i))
                .collect();
            print_items(&values, cli.link.json, &mut out)?;
            for f in &failed {
                eprintln!("vevor-probe: {f}");
            }
            if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Cmd::Get { name } => {
            let item = vevor_modbus::item(name)?;
            if item.access == map::Access::WriteOnly {
                bail!("{name} is a command register: it can only be written");
            }
            let value = s.read_item(item)?;
            print_items(&[(item, value)], cli.link.json, &mut out)?;
            ExitCode::SUCCESS
        }
        Cmd::Set { name, value } => {
            let item = vevor_modbus::item(name)?;
            let raw = vevor_modbus::parse_value(item, value)?;
            let before = if item.access == map::Access::WriteOnly { None } else { Some(s.read_item(item)?) };
            let link_name = s.link.name().to_owned();
            if before.as_ref().is_some_and(|b| b.raw() == i64::from(raw)) {
                writeln!(out, "{name}: already {}", vevor_modbus::decode(item, &[raw]).display(item))?;
                return Ok(ExitCode::SUCCESS);
            }
            let request = vevor_modbus::write_request(item, raw)?;
            let pdu = modbus_call(&mut s.link, s.slave, &request, s.timeout)
                .map_err(anyhow::Error::msg)?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{link_name}: no reply to the write within {:.1} s",
                        s.timeout.as_secs_f64()
                    )
                })?;
            vevor_modbus::parse_write(&pdu)?.map_err(|code| {
                anyhow::anyhow!("{link_name}: the inverter refused {name}={value}: {code}")
            })?;
            let new = vevor_modbus::decode(item, &[raw]).display(item);
            match before {
                None => writeln!(out, "{name}: {new} written")?,
                Some(old) => {
                    let back = s.read_item(item)?;
                    if back.raw() != i64::from(raw) {
                        bail!("{link_name}: wrote {name}={new} but it reads back {}", back.display(item));
                    }
                    writeln!(out, "{name}: {} -> {new} (read back)", old.display(item))?;
                }
            }
            ExitCode::SUCCESS
        }
    };
    out.flush()?;
    Ok(code)
}

fn print_items(values: &[(&'static Item, Value)], json: bool, out: &mut impl Write) -> io::Result<()> {
    if json {
        let mut map = serde_json::Map::new();
        for (item, value) in values {
            let (key, v) = value.json_field(item);
            let v = match v {
                JsonValue::Int(n) => serde_json::Value::from(n),
                JsonValue::Str(s) => serde_json::Value::from(s),
            };
            map.insert(key, v);
        }
        writeln!(out, "{}", serde_json::Value::Object(map))
    } else {
        for (item, value) in values {
            writeln!(out, "{:<32}{}", item.name, value.display(item))?;
        }
        Ok(())
    }
}
