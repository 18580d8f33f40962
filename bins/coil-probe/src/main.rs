//! `coil-probe`: read and set the Eco-Worthy battery monitor over Modbus RTU.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use coil_modbus::{Level, Reading, Settings, request};
use probe_kit::{LinkArgs, modbus_call};

#[derive(Debug, Parser)]
#[command(
    name = "coil-probe",
    version,
    about = "Read and set the Eco-Worthy battery monitor ('coil') over Modbus RTU"
)]
struct Cli {
    #[command(flatten)]
    link: LinkArgs,
    /// The counter's Modbus address.
    #[arg(long, global = true, default_value_t = coil_modbus::DEFAULT_SLAVE)]
    slave: u8,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Live values: SOC, voltage, current, power, energy, remaining capacity, state.
    Read,
    /// Settings: capacity, full/empty voltage, alarms.
    Settings,
    /// Set the SOC readout to 100 % (custom function 0x6F, value 000F).
    SetFull,
    /// Set the SOC readout to 0 % (custom function 0x6F, value 0000).
    SetEmpty,
    /// Write the full capacity and the full voltage (registers 1-3, one write), then read them back.
    SetCapacity {
        /// Capacity in mAh (e.g. 205000).
        mah: u32,
        /// Voltage at which the counter resets to 100 %, in V (e.g. 27.35).
        #[arg(long, value_parser = parse_volts)]
        full_voltage: u16,
    },
}

/// Volts with at most two decimals, as the register's 0.01 V steps.
fn parse_volts(s: &str) -> Result<u16, String> {
    let bad = || format!("'{s}' is not a voltage in V with at most two decimals (e.g. 27.35)");
    let (int, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if int.is_empty() || frac.len() > 2 || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let cv = int.parse::<u32>().map_err(|_| bad())? * 100
        + format!("{frac:0<2}").parse::<u32>().map_err(|_| bad())?;
    u16::try_from(cv).ok().filter(|v| *v > 0).ok_or_else(bad)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if probe_kit::is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coil-probe: {}", probe_kit::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let mut link = cli.link.open().map_err(anyhow::Error::msg)?;
    let timeout = cli.link.timeout();
    let name = link.name().to_owned();
    let mut out = io::stdout().lock();
    let no_reply = || anyhow::anyhow!("{name}: no reply within {:.1} s", timeout.as_secs_f64());
    match &cli.command {
        Cmd::Read => {
            let pdu = modbus_call(&mut link, cli.slave, &request::read_inputs(), timeout)
                .map_err(anyhow::Error::msg)?;
            let reading: Reading = coil_modbus::parse_inputs(&pdu.ok_or_else(no_reply)?)
                .with_context(|| format!("{name}: bad reply"))?
                .map_err(|code| anyhow::anyhow!("{name}: the counter refused: {code}"))?;
            probe_kit::print_value(&reading, cli.link.json, &mut out)?;
        }
        Cmd::Settings => {
            let settings = read_settings(&mut link, cli, &name)?;
            probe_kit::print_value(&settings, cli.link.json, &mut out)?;
        }
        Cmd::SetFull | Cmd::SetEmpty => {
            let level = if matches!(cli.command, Cmd::SetFull) { Level::Full } else { Level::Empty };
            let what = if level == Level::Full { "set-full" } else { "set-empty" };
            let pdu = modbus_call(&mut link, cli.slave, &request::set_level(level), timeout)
                .map_err(anyhow::Error::msg)?;
            // The reply format of 0x6F is unknown: any CRC-valid 0x6F frame counts, and so does silence.
            let (replied, text) = match &pdu {
                Some(p) if p[0] & 0x80 != 0 => {
                    let code = modbus_rtu::ExceptionCode(p.get(1).copied().unwrap_or(0));
                    bail!("{name}: {what} refused: {code}");
                }
                Some(p) => (true, format!("{what} sent; the counter replied ({})", hex(p))),
                None => (
                    false,
                    format!(
                        "{what} sent; no reply within {:.1} s (the reply format is unknown; the counter may stay silent)",
                        timeout.as_secs_f64()
                    ),
                ),
            };
            if cli.link.json {
                let v = serde_json::json!({ "command": what, "replied": replied, "reply": pdu.as_deref().map(hex) });
                writeln!(out, "{v}")?;
            } else {
                writeln!(out, "{text}")?;
            }
        }
        Cmd::SetCapacity { mah, full_voltage } => {
            let pdu =
                modbus_call(&mut link, cli.slave, &request::write_capacity(*mah, *full_voltage), timeout)
                    .map_err(anyhow::Error::msg)?
                    .ok_or_else(no_reply)?;
            if pdu[0] & 0x80 != 0 {
                let code = modbus_rtu::ExceptionCode(pdu.get(1).copied().unwrap_or(0));
                bail!("{name}: the counter refused the write: {code}");
            }
            let settings = read_settings(&mut link, cli, &name)?;
            if (settings.capacity_mah, settings.full_voltage_cv) != (*mah, *full_voltage) {
                bail!(
                    "{name}: wrote {mah} mAh / {:.2} V but it reads back {} mAh / {:.2} V",
                    f64::from(*full_voltage) / 100.0,
                    settings.capacity_mah,
                    f64::from(settings.full_voltage_cv) / 100.0
                );
            }
            probe_kit::print_value(&settings, cli.link.json, &mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn read_settings(link: &mut link::Link, cli: &Cli, name: &str) -> anyhow::Result<Settings> {
    let timeout = cli.link.timeout();
    let pdu = modbus_call(link, cli.slave, &request::read_settings(), timeout)
        .map_err(anyhow::Error::msg)?
        .ok_or_else(|| anyhow::anyhow!("{name}: no reply within {:.1} s", timeout.as_secs_f64()))?;
    coil_modbus::parse_settings(&pdu)
        .with_context(|| format!("{name}: bad reply"))?
        .map_err(|code| anyhow::anyhow!("{name}: the counter refused: {code}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
}
