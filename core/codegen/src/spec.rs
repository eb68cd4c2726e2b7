//! Reading Kafka's JSON message specs into a model the emitter can walk.
//!
//! The specs are JSON with `//` comments. Each file defines one message (a
//! request, response, header or data schema) whose fields may nest structs,
//! plus `commonStructs` shared by several fields.

use std::collections::BTreeMap;

use serde_json::Value;

/// A closed range of versions; `min > max` means "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub min: i16,
    pub max: i16,
}

impl Versions {
    pub const NONE: Versions = Versions { min: 1, max: 0 };

    pub fn parse(s: &str) -> Result<Versions, String> {
        let s = s.trim();
        if s == "none" {
            return Ok(Versions::NONE);
        }
        let num = |t: &str| {
            t.trim()
                .parse::<i16>()
                .map_err(|e| format!("bad version {t:?}: {e}"))
        };
        if let Some(min) = s.strip_suffix('+') {
            return Ok(Versions {
                min: num(min)?,
                max: i16::MAX,
            });
        }
        if let Some((a, b)) = s.split_once('-') {
            return Ok(Versions {
                min: num(a)?,
                max: num(b)?,
            });
        }
        let v = num(s)?;
        Ok(Versions { min: v, max: v })
    }

    pub fn is_empty(self) -> bool {
        self.min > self.max
    }

    pub fn intersect(self, o: Versions) -> Versions {
        Versions {
            min: self.min.max(o.min),
            max: self.max.min(o.max),
        }
    }

    /// A Rust boolean expression over `version` that is true inside the
    /// range, given that `version` always lies within `within`.
    pub fn cond(self, within: Versions) -> String {
        let r = self.intersect(within);
        if r.is_empty() {
            return "false".into();
        }
        let lo = r.min > within.min;
        let hi = r.max < within.max;
        match (lo, hi) {
            (false, false) => "true".into(),
            (true, false) => format!("version >= {}", r.min),
            (false, true) => format!("version <= {}", r.max),
            (true, true) if r.min == r.max => format!("version == {}", r.min),
            (true, true) => format!("({} ..= {}).contains(&version)", r.min, r.max),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prim {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Float64,
    String,
    Bytes,
    Records,
    Uuid,
}

impl Prim {
    fn parse(s: &str) -> Option<Prim> {
        Some(match s {
            "bool" => Prim::Bool,
            "int8" => Prim::Int8,
            "int16" => Prim::Int16,
            "uint16" => Prim::Uint16,
            "int32" => Prim::Int32,
            "uint32" => Prim::Uint32,
            "int64" => Prim::Int64,
            "float64" => Prim::Float64,
            "string" => Prim::String,
            "bytes" => Prim::Bytes,
            "records" => Prim::Records,
            "uuid" => Prim::Uuid,
            _ => return None,
        })
    }

    /// Strings, byte arrays and records carry a length and may be null.
    pub fn is_sized(self) -> bool {
        matches!(self, Prim::String | Prim::Bytes | Prim::Records)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    Prim(Prim),
    Array(Box<FieldType>),
    Struct(String),
}

impl FieldType {
    fn parse(s: &str) -> FieldType {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix("[]") {
            return FieldType::Array(Box::new(FieldType::parse(inner)));
        }
        match Prim::parse(s) {
            Some(p) => FieldType::Prim(p),
            None => FieldType::Struct(s.to_string()),
        }
    }

    /// Whether a null is representable for this type at all.
    pub fn can_be_null(&self) -> bool {
        match self {
            FieldType::Prim(p) => p.is_sized(),
            FieldType::Array(_) | FieldType::Struct(_) => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub versions: Versions,
    pub nullable: Versions,
    pub tag: Option<u32>,
    pub tagged: Versions,
    pub ignorable: bool,
    pub default: Option<String>,
    pub about: String,
    /// A field-level `flexibleVersions` (only `ClientId` in the request
    /// header has one: it stays a classic string in flexible versions).
    pub flexible_override: Option<Versions>,
}

#[derive(Debug, Clone)]
pub struct StructDef {
    pub name: String,
    pub about: String,
    pub versions: Versions,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone)]
pub struct Spec {
    /// File stem, e.g. `ProduceRequest`.
    pub file: String,
    pub name: String,
    pub kind: String,
    pub api_key: Option<i16>,
    pub valid: Versions,
    pub flexible: Versions,
    pub deprecated: Versions,
    pub latest_unstable: bool,
    pub listeners: Vec<String>,
    /// Every struct of the file, the message's own first, in definition
    /// order.
    pub structs: Vec<StructDef>,
}

/// Removes `//` comments outside string literals.
pub fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        if c == '"' {
            in_str = true;
            out.push(c);
        } else if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn versions_field(v: &Value, key: &str) -> Result<Option<Versions>, String> {
    match v.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Versions::parse(s).map(Some),
        Some(other) => Err(format!("{key}: expected a string, got {other}")),
    }
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

struct Collector {
    structs: Vec<StructDef>,
    common: BTreeMap<String, StructDef>,
}

impl Collector {
    fn fields(&mut self, arr: Option<&Value>, ctx: &str) -> Result<Vec<Field>, String> {
        let mut out = Vec::new();
        let Some(arr) = arr else { return Ok(out) };
        let arr = arr
            .as_array()
            .ok_or_else(|| format!("{ctx}: fields is not an array"))?;
        for f in arr {
            let name = str_field(f, "name")
                .ok_or_else(|| format!("{ctx}: field without name"))?
                .to_string();
            let ctx = format!("{ctx}.{name}");
            let ty_s = str_field(f, "type").ok_or_else(|| format!("{ctx}: no type"))?;
            let ty = FieldType::parse(ty_s);
            let versions =
                versions_field(f, "versions")?.ok_or_else(|| format!("{ctx}: no versions"))?;
            let nullable = versions_field(f, "nullableVersions")?.unwrap_or(Versions::NONE);
            let tagged = versions_field(f, "taggedVersions")?.unwrap_or(Versions::NONE);
            let tag = match f.get("tag") {
                None => None,
                Some(t) => Some(
                    scalar_string(t)
                        .and_then(|s| s.parse::<u32>().ok())
                        .ok_or_else(|| format!("{ctx}: bad tag"))?,
                ),
            };
            if tag.is_some() == tagged.is_empty() {
                return Err(format!("{ctx}: tag and taggedVersions must come together"));
            }
            let default = f.get("default").and_then(scalar_string);
            let about = str_field(f, "about").unwrap_or_default().to_string();
            let flexible_override = versions_field(f, "flexibleVersions")?;
            let ignorable = f.get("ignorable").and_then(Value::as_bool).unwrap_or(false);
            // A field with its own "fields" defines a struct inline.
            let struct_name = match &ty {
                FieldType::Struct(s) => Some(s.clone()),
                FieldType::Array(inner) => match inner.as_ref() {
                    FieldType::Struct(s) => Some(s.clone()),
                    _ => None,
                },
                FieldType::Prim(_) => None,
            };
            if let Some(sname) = struct_name {
                if f.get("fields").is_some() {
                    let fields = self.fields(f.get("fields"), &ctx)?;
                    if self.structs.iter().any(|s| s.name == sname)
                        || self.common.contains_key(&sname)
                    {
                        return Err(format!("{ctx}: struct {sname} defined twice"));
                    }
                    self.structs.push(StructDef {
                        name: sname,
                        about: about.clone(),
                        versions,
                        fields,
                    });
                } else if !self.common.contains_key(&sname) {
                    return Err(format!("{ctx}: unknown struct type {sname}"));
                }
            }
            out.push(Field {
                name,
                ty,
                versions,
                nullable,
                tag,
                tagged,
                ignorable,
                default,
                about,
                flexible_override,
            });
        }
        Ok(out)
    }
}

pub fn parse(file: &str, src: &str) -> Result<Spec, String> {
    let json: Value =
        serde_json::from_str(&strip_comments(src)).map_err(|e| format!("{file}: {e}"))?;
    let name = str_field(&json, "name")
        .ok_or_else(|| format!("{file}: no name"))?
        .to_string();
    let kind = str_field(&json, "type")
        .ok_or_else(|| format!("{file}: no type"))?
        .to_string();
    let api_key = json
        .get("apiKey")
        .and_then(Value::as_i64)
        .map(|k| i16::try_from(k).map_err(|_| format!("{file}: bad apiKey")))
        .transpose()?;
    let valid = versions_field(&json, "validVersions")?
        .ok_or_else(|| format!("{file}: no validVersions"))?;
    let flexible = versions_field(&json, "flexibleVersions")?.unwrap_or(Versions::NONE);
    let deprecated = versions_field(&json, "deprecatedVersions")?.unwrap_or(Versions::NONE);
    let latest_unstable = json
        .get("latestVersionUnstable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let listeners = json
        .get("listeners")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();

    let mut c = Collector {
        structs: Vec::new(),
        common: BTreeMap::new(),
    };
    // Common structs first: fields anywhere may refer to them. They may
    // refer to each other, so declare names before reading fields.
    let commons = json
        .get("commonStructs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for cs in &commons {
        let cname =
            str_field(cs, "name").ok_or_else(|| format!("{file}: common struct without name"))?;
        c.common.insert(
            cname.to_string(),
            StructDef {
                name: cname.to_string(),
                about: String::new(),
                versions: Versions::NONE,
                fields: Vec::new(),
            },
        );
    }
    let mut common_defs = Vec::new();
    for cs in &commons {
        let cname = str_field(cs, "name").unwrap_or_default().to_string();
        let versions = versions_field(cs, "versions")?.unwrap_or(valid);
        let fields = c.fields(cs.get("fields"), &format!("{file}.{cname}"))?;
        common_defs.push(StructDef {
            name: cname,
            about: str_field(cs, "about").unwrap_or_default().to_string(),
            versions,
            fields,
        });
    }
    let top_fields = c.fields(json.get("fields"), file)?;
    let top = StructDef {
        name: name.clone(),
        about: String::new(),
        versions: valid,
        fields: top_fields,
    };
    let mut structs = vec![top];
    structs.extend(c.structs);
    structs.extend(common_defs);
    let mut seen = std::collections::BTreeSet::new();
    for s in &structs {
        if !seen.insert(s.name.clone()) {
            return Err(format!("{file}: struct {} defined twice", s.name));
        }
    }
    Ok(Spec {
        file: file.to_string(),
        name,
        kind,
        api_key,
        valid,
        flexible,
        deprecated,
        latest_unstable,
        listeners,
        structs,
    })
}
