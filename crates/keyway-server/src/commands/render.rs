//! How client commands print: tables for people (comfy-table, no borders, like `kubectl`),
//! JSON for scripts, and one line per event while following. Knows nothing about HTTP.

use std::io::Write;

use comfy_table::{presets, ColumnConstraint, Table, Width};
use keyway_client::model::{
    AccessCode, AccessCodeError, AccessCodeWarning, ActionAttempt, Device, DeviceError,
    DeviceWarning, Event, Timestamp, UnmanagedAccessCode,
};
use serde::Serialize;

/// Writes `value` as pretty JSON and a newline.
pub fn json(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Writes `value` as one line of JSON (for streams of events).
pub fn json_line(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header.to_vec());
    table
}

fn print(out: &mut impl Write, table: &Table) -> anyhow::Result<()> {
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_owned()
}

fn instant(value: Option<&Timestamp>) -> String {
    value.map_or_else(|| "-".to_owned(), Timestamp::to_string)
}

fn code_issues(errors: &[AccessCodeError], warnings: &[AccessCodeWarning]) -> String {
    let codes: Vec<&str> = errors
        .iter()
        .map(|e| e.error_code.as_str())
        .chain(warnings.iter().map(|w| w.warning_code.as_str()))
        .collect();
    if codes.is_empty() {
        "-".into()
    } else {
        codes.join(",")
    }
}

fn device_issues(errors: &[DeviceError], warnings: &[DeviceWarning]) -> String {
    let codes: Vec<&str> = errors
        .iter()
        .map(|e| e.error_code.as_str())
        .chain(warnings.iter().map(|w| w.warning_code.as_str()))
        .collect();
    if codes.is_empty() {
        "-".into()
    } else {
        codes.join(",")
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

pub fn access_codes(out: &mut impl Write, codes: &[AccessCode]) -> anyhow::Result<()> {
    if codes.is_empty() {
        writeln!(out, "No access codes.")?;
        return Ok(());
    }
    let mut table = table(&[
        "ACCESS CODE ID",
        "NAME",
        "CODE",
        "STATUS",
        "TYPE",
        "STARTS AT",
        "ENDS AT",
        "DEVICE",
        "ISSUES",
    ]);
    for code in codes {
        table.add_row(vec![
            code.access_code_id.clone(),
            or_dash(code.name.as_deref()),
            or_dash(code.code.as_deref()),
            code.status.as_str().to_owned(),
            code.kind.as_str().to_owned(),
            instant(code.starts_at.as_ref()),
            instant(code.ends_at.as_ref()),
            code.device_id.clone(),
            code_issues(&code.errors, &code.warnings),
        ]);
    }
    print(out, &table)
}

/// One access code, field by field; errors and warnings with their messages.
pub fn access_code(out: &mut impl Write, code: &AccessCode) -> anyhow::Result<()> {
    let mut table = table(&["FIELD", "VALUE"]);
    let rows = [
        ("access_code_id", code.access_code_id.clone()),
        ("name", or_dash(code.name.as_deref())),
        ("code", or_dash(code.code.as_deref())),
        ("status", code.status.as_str().to_owned()),
        ("type", code.kind.as_str().to_owned()),
        ("starts_at", instant(code.starts_at.as_ref())),
        ("ends_at", instant(code.ends_at.as_ref())),
        ("device_id", code.device_id.clone()),
        ("workspace_id", code.workspace_id.clone()),
        ("created_at", code.created_at.to_string()),
        (
            "external_modification",
            if code.is_external_modification_allowed {
                "allowed"
            } else {
                "not allowed"
            }
            .to_owned(),
        ),
    ];
    for (field, value) in rows {
        table.add_row(vec![field.to_owned(), value]);
    }
    for error in &code.errors {
        table.add_row(vec![
            "error".to_owned(),
            format!("{}: {}", error.error_code, error.message),
        ]);
    }
    for warning in &code.warnings {
        table.add_row(vec![
            "warning".to_owned(),
            format!("{}: {}", warning.warning_code, warning.message),
        ]);
    }
    print(out, &table)
}

pub fn unmanaged_access_codes(
    out: &mut impl Write,
    codes: &[UnmanagedAccessCode],
) -> anyhow::Result<()> {
    if codes.is_empty() {
        writeln!(out, "No unmanaged access codes.")?;
        return Ok(());
    }
    let mut table = table(&[
        "ACCESS CODE ID",
        "NAME",
        "CODE",
        "STATUS",
        "DEVICE",
        "CREATED AT",
    ]);
    for code in codes {
        table.add_row(vec![
            code.access_code_id.clone(),
            or_dash(code.name.as_deref()),
            or_dash(code.code.as_deref()),
            code.status.as_str().to_owned(),
            code.device_id.clone(),
            code.created_at.to_string(),
        ]);
    }
    print(out, &table)
}

pub fn action_attempt(out: &mut impl Write, attempt: &ActionAttempt) -> anyhow::Result<()> {
    let mut table = table(&["ACTION ATTEMPT ID", "TYPE", "STATUS", "ERROR"]);
    table.add_row(vec![
        attempt.action_attempt_id.clone(),
        attempt.action_type.as_str().to_owned(),
        attempt.status.as_str().to_owned(),
        attempt
            .error
            .as_ref()
            .map_or_else(|| "-".to_owned(), |e| format!("{}: {}", e.kind, e.message)),
    ]);
    print(out, &table)
}

pub fn devices(out: &mut impl Write, devices: &[Device]) -> anyhow::Result<()> {
    if devices.is_empty() {
        writeln!(out, "No devices.")?;
        return Ok(());
    }
    let mut table = table(&[
        "DEVICE ID",
        "NAME",
        "TYPE",
        "MANUFACTURER",
        "ONLINE",
        "LOCKED",
        "ISSUES",
    ]);
    for device in devices {
        table.add_row(vec![
            device.device_id.clone(),
            device.display_name.clone(),
            device.device_type.clone(),
            or_dash(Some(&device.properties.manufacturer)),
            yes_no(device.properties.online).to_owned(),
            yes_no(device.properties.locked).to_owned(),
            device_issues(&device.errors, &device.warnings),
        ]);
    }
    print(out, &table)
}

pub fn device(out: &mut impl Write, device: &Device) -> anyhow::Result<()> {
    let properties = &device.properties;
    let lengths: Vec<String> = properties
        .supported_code_lengths
        .iter()
        .map(u32::to_string)
        .collect();
    let mut table = table(&["FIELD", "VALUE"]);
    let rows = [
        ("device_id", device.device_id.clone()),
        ("name", device.display_name.clone()),
        ("device_type", device.device_type.clone()),
        ("manufacturer", or_dash(Some(&properties.manufacturer))),
        ("connected_account_id", device.connected_account_id.clone()),
        ("online", yes_no(properties.online).to_owned()),
        ("locked", yes_no(properties.locked).to_owned()),
        ("supported_code_lengths", or_dash(Some(&lengths.join(",")))),
        (
            "max_active_codes_supported",
            properties.max_active_codes_supported.to_string(),
        ),
        ("created_at", device.created_at.to_string()),
    ];
    for (field, value) in rows {
        table.add_row(vec![field.to_owned(), value]);
    }
    for error in &device.errors {
        table.add_row(vec![
            "error".to_owned(),
            format!("{}: {}", error.error_code, error.message),
        ]);
    }
    for warning in &device.warnings {
        table.add_row(vec![
            "warning".to_owned(),
            format!("{}: {}", warning.warning_code, warning.message),
        ]);
    }
    print(out, &table)
}

const EVENT_HEADER: [&str; 5] = [
    "OCCURRED AT",
    "EVENT TYPE",
    "DEVICE",
    "ACCESS CODE",
    "EVENT ID",
];

fn event_row(event: &Event) -> Vec<String> {
    vec![
        event.occurred_at.to_string(),
        event.event_type.as_str().to_owned(),
        or_dash(event.device_id.as_deref()),
        or_dash(event.access_code_id.as_deref()),
        event.event_id.clone(),
    ]
}

/// The header line of the events table alone (following, before any event came).
pub fn event_header(out: &mut impl Write) -> anyhow::Result<()> {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(EVENT_HEADER.to_vec());
    table.set_constraints(event_widths());
    print(out, &table)
}

fn event_widths() -> [ColumnConstraint; 5] {
    [24, 40, 20, 36, 36].map(|w| ColumnConstraint::LowerBoundary(Width::Fixed(w)))
}

/// Events as a table; `header: false` prints rows only, with the same minimum column widths,
/// so that batches printed one after the other while following line up.
pub fn events(out: &mut impl Write, events: &[Event], header: bool) -> anyhow::Result<()> {
    if events.is_empty() {
        if header {
            writeln!(out, "No events.")?;
        }
        return Ok(());
    }
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    if header {
        table.set_header(EVENT_HEADER.to_vec());
    }
    for event in events {
        table.add_row(event_row(event));
    }
    table.set_constraints(event_widths());
    print(out, &table)
}
