//! The schema against the types: `tests/example.report.json` is a real
//! report with every `null` filled in (so that every nested field is
//! there); it must read into [`SlideReport`] and write back to the same
//! JSON (so the types have exactly its fields), and its fields must be
//! exactly the schema's properties, all required, at every level.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;

fn json(path: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Paths of every `null` in `v`.
fn nulls(v: &Value, at: &str, found: &mut Vec<String>) {
    match v {
        Value::Null => found.push(at.to_string()),
        Value::Object(m) => m
            .iter()
            .for_each(|(k, x)| nulls(x, &format!("{at}.{k}"), found)),
        Value::Array(a) => a.iter().for_each(|x| nulls(x, &format!("{at}[]"), found)),
        _ => {}
    }
}

/// Every difference between the fields of `v` and the properties of
/// `schema`, at every level.
fn mismatches(schema: &Value, v: &Value, at: &str, found: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema["properties"].as_object() {
                let fields: BTreeSet<&String> = m.keys().collect();
                let described: BTreeSet<&String> = props.keys().collect();
                for k in fields.symmetric_difference(&described) {
                    let side = if m.contains_key(*k) {
                        "a field the schema lacks"
                    } else {
                        "in the schema, not a field"
                    };
                    found.push(format!("{at}.{k}: {side}"));
                }
                let required: BTreeSet<&str> = schema["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                for k in &described {
                    if !required.contains(k.as_str()) {
                        found.push(format!("{at}.{k}: always written, not required"));
                    }
                }
                for (k, x) in m {
                    mismatches(
                        &props.get(k).cloned().unwrap_or(Value::Null),
                        x,
                        &format!("{at}.{k}"),
                        found,
                    );
                }
            } else if let Some(each) = schema.get("additionalProperties").filter(|s| s.is_object())
            {
                for (k, x) in m {
                    mismatches(each, x, &format!("{at}.{k}"), found);
                }
            } else if schema.get("type") != Some(&Value::from("object")) && !schema.is_null() {
                found.push(format!(
                    "{at}: an object the schema does not describe as one"
                ));
            }
        }
        Value::Array(a) => {
            for x in a {
                mismatches(&schema["items"], x, &format!("{at}[]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn the_schema_describes_exactly_the_report_types() {
    let example = json("tests/example.report.json");
    let mut found = Vec::new();
    nulls(&example, "", &mut found);
    // The manifest is the model's own file: the schema leaves it open.
    assert!(found.is_empty(), "fill these in the example: {found:?}");
    let report: SlideReport = serde_json::from_value(example.clone()).unwrap();
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        example,
        "the example does not read into SlideReport and back unchanged: a field of one is not in the other"
    );
    let schema = json("report.schema.json");
    let mut found = Vec::new();
    mismatches(&schema, &example, "", &mut found);
    assert!(
        found.is_empty(),
        "schema and types differ:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_text_on_disk_has_sorted_keys_and_every_field() {
    let text = to_text(&SlideReport::default()).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert!(v["slide"]["mpp"].is_null() && v["areas"]["tumor_mm2"].is_null());
    // The order in the text too (not only once parsed).
    let at = |k: &str| text.find(&format!("\n  \"{k}\":")).unwrap();
    assert!(at("areas") < at("bad_tiles") && at("timings_s") < at("wsiseg_version"));
}

#[test]
fn an_older_report_reads_with_defaults_for_what_it_lacks() {
    let r: SlideReport =
        serde_json::from_str(r#"{"wsiseg_version": "0.0.9", "areas": {"tumor_fraction": 0.25}}"#)
            .unwrap();
    assert_eq!(r.wsiseg_version, "0.0.9");
    assert_eq!(r.areas.tumor_fraction, 0.25);
    assert_eq!(r.areas.tumor_mm2, None);
    assert!(r.outputs.is_empty());
}

#[test]
fn every_csv_column_is_a_summary_field_and_every_field_a_column() {
    let v = serde_json::to_value(SummaryLine::default()).unwrap();
    let fields: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let columns: BTreeSet<&str> = CSV_COLUMNS.into_iter().collect();
    assert_eq!(fields, columns);
    let line = SummaryLine {
        name: "a,b".into(),
        error: Some("said \"no\"".into()),
        regions: Some(3),
        ..Default::default()
    };
    let cells = line.csv_cells().unwrap();
    let cell = |c: &str| &cells[CSV_COLUMNS.iter().position(|x| *x == c).unwrap()];
    assert_eq!(cell("name"), "\"a,b\"");
    assert_eq!(cell("error"), "\"said \"\"no\"\"\"");
    assert_eq!(cell("regions"), "3");
    assert_eq!(cell("tumor_mm2"), "");
}
