//! The register table (EG4 3000EHV protocol V1.0, the original project's Vevor research).

/// Who may do what with a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Live data and the BMS mirror: writes are refused (the inverter answers exception 01).
    ReadOnly,
    /// A setting.
    ReadWrite,
    /// A command register (write 1 to act).
    WriteOnly,
}

/// How an item's registers hold its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// One register, unsigned.
    U16,
    /// One register, two's complement.
    I16,
    /// Two registers, high word first.
    U32,
    /// ASCII text, two characters per register.
    Ascii(u16),
}

impl Format {
    /// Registers the item spans.
    pub const fn registers(self) -> u16 {
        match self {
            Self::U16 | Self::I16 => 1,
            Self::U32 => 2,
            Self::Ascii(n) => n,
        }
    }
}

/// The values a write may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Allowed {
    /// Not writable, or no documented limit (raw u16).
    Any,
    /// Raw values from `min` to `max`.
    Range {
        /// Lowest raw value.
        min: u16,
        /// Highest raw value.
        max: u16,
    },
    /// Named raw values.
    Choices(&'static [(u16, &'static str)]),
}

/// One named item of the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Item {
    /// snake_case name (`output_priority`).
    pub name: &'static str,
    /// First register.
    pub address: u16,
    /// Encoding.
    pub format: Format,
    /// Raw value / divisor = value in `unit`.
    pub divisor: u16,
    /// Display unit (`V`, `A`, `Hz`, `W`, `VA`, `%`, `°C`, `min`, `days`, or empty).
    pub unit: &'static str,
    /// Who may write.
    pub access: Access,
    /// What a write may carry.
    pub allowed: Allowed,
    /// Words for the UI.
    pub description: &'static str,
}

/// Working mode (register 201).
pub const WORKING_MODES: &[(u16, &str)] = &[
    (0, "power_on"),
    (1, "standby"),
    (2, "mains"),
    (3, "off_grid"),
    (4, "bypass"),
    (5, "charging"),
    (6, "fault"),
];
/// Output priority (register 301, Vevor's Program 01).
pub const OUTPUT_PRIORITIES: &[(u16, &str)] = &[(0, "usb"), (1, "sub"), (2, "sbu")];
/// Charging priority (register 331, Program 16).
pub const CHARGING_PRIORITIES: &[(u16, &str)] =
    &[(0, "utility"), (1, "pv"), (2, "pv_utility"), (3, "pv_only")];
const OFF_ON: &[(u16, &str)] = &[(0, "off"), (1, "on")];
const OUTPUT_MODES: &[(u16, &str)] = &[
    (0, "single"),
    (1, "parallel"),
    (2, "three_phase_p1"),
    (3, "three_phase_p2"),
    (4, "three_phase_p3"),
    (5, "split_phase_p1"),
    (6, "split_phase_p2"),
];
const INPUT_RANGES: &[(u16, &str)] = &[(0, "apl"), (1, "ups")];
const BUZZER_MODES: &[(u16, &str)] =
    &[(0, "mute"), (1, "source_and_warnings"), (2, "warnings"), (3, "faults")];
const BATTERY_TYPES: &[(u16, &str)] =
    &[(0, "agm"), (1, "fld"), (2, "user"), (3, "li1"), (4, "li2"), (5, "li3"), (6, "li4")];
const OUTPUT_VOLTAGES: &[(u16, &str)] = &[(2200, "220"), (2300, "230"), (2400, "240")];
const OUTPUT_FREQUENCIES: &[(u16, &str)] = &[(5000, "50"), (6000, "60")];
const TURN_ON_MODES: &[(u16, &str)] = &[(0, "local_or_remote"), (1, "local_only"), (2, "remote_only")];
const REMOTE_SWITCH: &[(u16, &str)] = &[(0, "off"), (1, "on")];
const EXIT_FAULT: &[(u16, &str)] = &[(1, "exit")];

#[allow(clippy::too_many_arguments)] // one row of the table, in its column order
const fn item(
    name: &'static str,
    address: u16,
    format: Format,
    divisor: u16,
    unit: &'static str,
    access: Access,
    allowed: Allowed,
    description: &'static str,
) -> Item {
    Item { name, address, format, divisor, unit, access, allowed, description }
}

use Access::{ReadOnly as RO, ReadWrite as RW, WriteOnly as WO};
use Allowed::{Any, Choices, Range};
use Format::{Ascii, I16, U16, U32};

/// Live data: read-only.
pub const LIVE: &[Item] = &[
    item("fault_code", 100, U32, 1, "", RO, Any, "fault bits"),
    item("warning_code", 108, U32, 1, "", RO, Any, "warning bits"),
    item("serial_number", 186, Ascii(12), 1, "", RO, Any, "serial number"),
    item("working_mode", 201, U16, 1, "", RO, Choices(WORKING_MODES), "working mode"),
    item("mains_voltage", 202, I16, 10, "V", RO, Any, "mains voltage"),
    item("mains_frequency", 203, I16, 100, "Hz", RO, Any, "mains frequency"),
    item("mains_power", 204, I16, 1, "W", RO, Any, "mains power"),
    item("inverter_voltage", 205, I16, 10, "V", RO, Any, "inverter voltage"),
    item("inverter_current", 206, I16, 10, "A", RO, Any, "inverter current"),
    item("inverter_frequency", 207, I16, 100, "Hz", RO, Any, "inverter frequency"),
    item("inverter_power", 208, I16, 1, "W", RO, Any, "inverter power (+ output, - input)"),
    item("inverter_charging_power", 209, I16, 1, "W", RO, Any, "inverter charging power"),
    item("output_voltage", 210, I16, 10, "V", RO, Any, "output voltage"),
    item("output_current", 211, I16, 10, "A", RO, Any, "output current"),
    item("output_frequency", 212, I16, 100, "Hz", RO, Any, "output frequency"),
    item("output_active_power", 213, I16, 1, "W", RO, Any, "output active power"),
    item("output_apparent_power", 214, I16, 1, "VA", RO, Any, "output apparent power"),
    item("battery_voltage", 215, I16, 10, "V", RO, Any, "battery voltage"),
    item("battery_current", 216, I16, 10, "A", RO, Any, "battery current"),
    item("battery_power", 217, I16, 1, "W", RO, Any, "battery power"),
    item("pv_voltage", 219, I16, 10, "V", RO, Any, "PV voltage"),
    item("pv_current", 220, I16, 10, "A", RO, Any, "PV current"),
    item("pv_power", 223, I16, 1, "W", RO, Any, "PV power"),
    item("pv_charging_power", 224, I16, 1, "W", RO, Any, "PV charging power"),
    item("load_percent", 225, I16, 1, "%", RO, Any, "load"),
    item("dcdc_temperature", 226, I16, 1, "°C", RO, Any, "DC-DC temperature"),
    item("inverter_temperature", 227, I16, 1, "°C", RO, Any, "inverter temperature"),
    item("mppt_temperature", 228, I16, 1, "°C", RO, Any, "MPPT temperature (Vevor; reserved in the EG4 map)"),
    item("battery_soc", 229, U16, 1, "%", RO, Any, "battery SOC"),
    item("power_flow", 231, U16, 1, "", RO, Any, "power-flow bits"),
    item("battery_current_average", 232, I16, 10, "A", RO, Any, "battery current (+ charge / - discharge)"),
    item("inverter_charging_current", 233, I16, 10, "A", RO, Any, "inverter charging current"),
    item("pv_charging_current", 234, I16, 10, "A", RO, Any, "PV charging current"),
    item("rated_power", 643, U16, 1, "W", RO, Any, "rated power"),
    item("rated_cells", 644, U16, 1, "", RO, Any, "rated number of 12 V cells"),
];

/// The BMS mirror (Vevor only, the original's research): what the inverter took from the last
/// Pylontech 0x61/0x63 replies. Read-only; units are the best guess from those commands.
pub const BMS_MIRROR: &[Item] = &[
    item("bms_flags", 760, U16, 1, "", RO, Any, "BMS state flags (not Pylontech's layout)"),
    item("bms_charge_voltage_limit", 761, U16, 1000, "V", RO, Any, "BMS charge voltage limit"),
    item("bms_discharge_voltage_limit", 762, U16, 1000, "V", RO, Any, "BMS discharge voltage limit"),
    item("bms_charge_current_limit", 763, U16, 10, "A", RO, Any, "BMS charge current limit"),
    item("bms_discharge_current_limit", 764, U16, 10, "A", RO, Any, "BMS discharge current limit (no sign)"),
    item("bms_voltage", 770, U16, 1000, "V", RO, Any, "BMS voltage"),
    item("bms_772", 772, U16, 1, "", RO, Any, "always 65535"),
    item("bms_soc", 773, U16, 1, "%", RO, Any, "BMS SOC"),
    item("bms_current", 775, I16, 100, "A", RO, Any, "BMS current"),
];

/// Settings: read/write, and the command registers.
pub const SETTINGS: &[Item] = &[
    item("output_mode", 300, U16, 1, "", RW, Choices(OUTPUT_MODES), "output mode"),
    item("output_priority", 301, U16, 1, "", RW, Choices(OUTPUT_PRIORITIES), "output priority (Program 01)"),
    item("input_voltage_range", 302, U16, 1, "", RW, Choices(INPUT_RANGES), "input voltage range"),
    item("buzzer_mode", 303, U16, 1, "", RW, Choices(BUZZER_MODES), "buzzer mode"),
    item("lcd_backlight", 305, U16, 1, "", RW, Choices(OFF_ON), "LCD backlight always on"),
    item("lcd_auto_return", 306, U16, 1, "", RW, Choices(OFF_ON), "LCD returns to the home page"),
    item("energy_saving", 307, U16, 1, "", RW, Choices(OFF_ON), "energy-saving mode"),
    item("overload_restart", 308, U16, 1, "", RW, Choices(OFF_ON), "restart after overload"),
    item("over_temperature_restart", 309, U16, 1, "", RW, Choices(OFF_ON), "restart after over-temperature"),
    item("overload_bypass", 310, U16, 1, "", RW, Choices(OFF_ON), "overload transfers to bypass"),
    item("battery_eq_enable", 313, U16, 1, "", RW, Choices(OFF_ON), "battery equalisation"),
    item("output_voltage_setting", 320, U16, 10, "V", RW, Choices(OUTPUT_VOLTAGES), "output voltage"),
    item(
        "output_frequency_setting",
        321,
        U16,
        100,
        "Hz",
        RW,
        Choices(OUTPUT_FREQUENCIES),
        "output frequency",
    ),
    item("battery_type", 322, U16, 1, "", RW, Choices(BATTERY_TYPES), "battery type"),
    item(
        "battery_overvoltage_protection",
        323,
        U16,
        10,
        "V",
        RW,
        Range { min: 100, max: 700 },
        "battery over-voltage protection",
    ),
    item(
        "max_charging_voltage",
        324,
        U16,
        10,
        "V",
        RW,
        Range { min: 100, max: 700 },
        "maximum charge voltage",
    ),
    item(
        "floating_charging_voltage",
        325,
        U16,
        10,
        "V",
        RW,
        Range { min: 100, max: 700 },
        "float charge voltage",
    ),
    item(
        "mains_discharge_recovery",
        326,
        U16,
        10,
        "V",
        RW,
        Range { min: 0, max: 700 },
        "discharge recovery point in mains mode (0 = full)",
    ),
    item(
        "mains_low_voltage_protection",
        327,
        U16,
        10,
        "V",
        RW,
        Range { min: 100, max: 700 },
        "low-voltage protection in mains mode",
    ),
    item(
        "off_grid_low_voltage_protection",
        329,
        U16,
        10,
        "V",
        RW,
        Range { min: 100, max: 700 },
        "low-voltage protection off grid",
    ),
    item(
        "float_wait_time",
        330,
        U16,
        1,
        "min",
        RW,
        Range { min: 0, max: 900 },
        "wait from constant voltage to float",
    ),
    item(
        "charging_priority",
        331,
        U16,
        1,
        "",
        RW,
        Choices(CHARGING_PRIORITIES),
        "charging priority (Program 16)",
    ),
    item(
        "max_charging_current",
        332,
        U16,
        10,
        "A",
        RW,
        Range { min: 100, max: 800 },
        "maximum charge current (no-comm; Vevor minimum 30 A)",
    ),
    item(
        "max_mains_charging_current",
        333,
        U16,
        10,
        "A",
        RW,
        Range { min: 20, max: 800 },
        "maximum mains charge current",
    ),
    item("eq_charging_voltage", 334, U16, 10, "V", RW, Range { min: 100, max: 700 }, "equalisation voltage"),
    item("eq_time", 335, U16, 1, "min", RW, Range { min: 0, max: 900 }, "equalisation time"),
    item("eq_timeout", 336, U16, 1, "min", RW, Range { min: 0, max: 900 }, "equalisation timeout"),
    item("eq_interval", 337, U16, 1, "days", RW, Range { min: 1, max: 90 }, "equalisation interval"),
    item(
        "soc_low",
        341,
        U16,
        1,
        "%",
        RW,
        Range { min: 0, max: 100 },
        "mains-mode discharge SOC protection (Program 43)",
    ),
    item(
        "soc_high",
        342,
        U16,
        1,
        "%",
        RW,
        Range { min: 0, max: 100 },
        "mains-mode discharge SOC recovery (Program 44)",
    ),
    item(
        "soc_cutoff",
        343,
        U16,
        1,
        "%",
        RW,
        Range { min: 0, max: 100 },
        "off-grid discharge SOC protection (Program 45)",
    ),
    item(
        "max_discharge_current",
        351,
        U16,
        1,
        "A",
        RW,
        Range { min: 0, max: 500 },
        "maximum discharge current protection (Program 46)",
    ),
    item("turn_on_mode", 406, U16, 1, "", RW, Choices(TURN_ON_MODES), "turn-on mode"),
    item("remote_switch", 420, U16, 1, "", RW, Choices(REMOTE_SWITCH), "remote switch"),
    item("exit_fault", 426, U16, 1, "", WO, Choices(EXIT_FAULT), "leave the fault-locked state"),
];

/// Every item.
pub fn all() -> impl Iterator<Item = &'static Item> {
    LIVE.iter().chain(BMS_MIRROR).chain(SETTINGS)
}

/// The item named `name`.
pub fn find(name: &str) -> Option<&'static Item> {
    all().find(|i| i.name == name)
}

/// The item that starts at `address`.
pub fn at(address: u16) -> Option<&'static Item> {
    all().find(|i| i.address == address)
}
