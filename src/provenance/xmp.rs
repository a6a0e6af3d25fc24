//! The IPTC digital source type in an XMP packet, and the IPTC 2025.1 AI fields.
//!
//! The property may be written as an attribute of `rdf:Description`, as an element with the
//! URI as text, or as an element with an `rdf:resource` attribute; all three are read, with the
//! namespace resolved from the packet (any prefix).

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, QName, ResolveResult};
use quick_xml::reader::NsReader;
use quick_xml::XmlVersion;

use super::{Declaration, Kind};

const IPTC_EXT: &[u8] = b"http://iptc.org/std/Iptc4xmpExt/2008-02-29/";
const XMP_BASIC: &[u8] = b"http://ns.adobe.com/xap/1.0/";
const RDF: &[u8] = b"http://www.w3.org/1999/02/22-rdf-syntax-ns#";

/// Digital source types that declare generation by a trained model. `algorithmicMedia` (made by
/// an algorithm without training data) and `digitalCapture` do not.
const AI_SOURCE_TYPES: [&str; 3] = [
    "trainedAlgorithmicMedia",
    "compositeWithTrainedAlgorithmicMedia",
    "compositeSynthetic",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Property {
    DigitalSourceType,
    AiSystemUsed,
    AiSystemVersionUsed,
    AiPromptInformation,
    CreatorTool,
}

impl Property {
    fn of(ns: &[u8], local: &[u8]) -> Option<Property> {
        match (ns, local) {
            (IPTC_EXT, b"DigitalSourceType") => Some(Property::DigitalSourceType),
            (IPTC_EXT, b"AISystemUsed") => Some(Property::AiSystemUsed),
            (IPTC_EXT, b"AISystemVersionUsed") => Some(Property::AiSystemVersionUsed),
            (IPTC_EXT, b"AIPromptInformation") => Some(Property::AiPromptInformation),
            (XMP_BASIC, b"CreatorTool") => Some(Property::CreatorTool),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Found {
    source_type: Option<String>,
    system: Option<String>,
    system_version: Option<String>,
    prompt: bool,
    creator_tool: Option<String>,
}

impl Found {
    fn set(&mut self, property: Property, value: &str) {
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        let slot = match property {
            Property::DigitalSourceType => &mut self.source_type,
            Property::AiSystemUsed => &mut self.system,
            Property::AiSystemVersionUsed => &mut self.system_version,
            Property::CreatorTool => &mut self.creator_tool,
            Property::AiPromptInformation => {
                self.prompt = true;
                return;
            }
        };
        slot.get_or_insert_with(|| value.to_string());
    }
}

/// The declaration an XMP packet makes, if it makes one.
pub fn read(packet: &[u8]) -> Result<Option<Declaration>, String> {
    let found = scan(&String::from_utf8_lossy(packet))?;
    let code = found
        .source_type
        .as_deref()
        .map(|uri| uri.rsplit('/').next().unwrap_or(uri).to_string());
    if code.is_none() && found.system.is_none() && !found.prompt {
        return Ok(None);
    }
    let ai = code
        .as_deref()
        .is_some_and(|c| AI_SOURCE_TYPES.contains(&c))
        || found.system.is_some()
        || found.prompt;
    let generator = match (found.system, found.system_version) {
        (Some(s), Some(v)) => Some(format!("{s} {v}")),
        (Some(s), None) => Some(s),
        (None, _) => found.creator_tool,
    };
    Ok(Some(Declaration {
        kind: Kind::Iptc,
        generator,
        ai,
    }))
}

fn scan(xml: &str) -> Result<Found, String> {
    let mut reader = NsReader::from_str(xml);
    let mut found = Found::default();
    // The property whose element we are inside, the depth it opened at, and its text so far.
    let mut open: Option<(Property, usize, String)> = None;
    let mut depth = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.buffer_position()))?;
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let started = matches!(event, Event::Start(_));
                if started {
                    depth += 1;
                }
                if open.is_some() {
                    continue;
                }
                read_attributes(&reader, e, &mut found)?;
                if let Some(p) = element_property(&reader, e.name()) {
                    if let Some(resource) = rdf_resource(&reader, e)? {
                        found.set(p, &resource);
                    } else if started {
                        open = Some((p, depth, String::new()));
                    }
                }
            }
            Event::Text(t) => {
                if let Some((_, _, text)) = open.as_mut() {
                    text.push_str(&t.decode().map_err(|e| e.to_string())?);
                }
            }
            Event::CData(t) => {
                if let Some((_, _, text)) = open.as_mut() {
                    text.push_str(&t.decode().map_err(|e| e.to_string())?);
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, _, text)) = open.as_mut() {
                    let name = r.decode().map_err(|e| e.to_string())?;
                    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
                        text.push(c);
                    } else if let Some(s) = resolve_predefined_entity(&name) {
                        text.push_str(s);
                    }
                }
            }
            Event::End(_) => {
                if let Some((p, _, text)) = open.take_if(|(_, at, _)| *at == depth) {
                    found.set(p, &text);
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(found)
}

fn element_property(reader: &NsReader<&[u8]>, name: QName<'_>) -> Option<Property> {
    match reader.resolver().resolve_element(name) {
        (ResolveResult::Bound(Namespace(ns)), local) => Property::of(ns, local.as_ref()),
        _ => None,
    }
}

/// Properties written as attributes of the element (`rdf:Description`'s short form).
fn read_attributes(
    reader: &NsReader<&[u8]>,
    e: &BytesStart<'_>,
    found: &mut Found,
) -> Result<(), String> {
    for attr in e.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        if let (ResolveResult::Bound(Namespace(ns)), local) =
            reader.resolver().resolve_attribute(attr.key)
        {
            if let Some(p) = Property::of(ns, local.as_ref()) {
                found.set(
                    p,
                    &attr
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|e| e.to_string())?,
                );
            }
        }
    }
    Ok(())
}

/// The `rdf:resource` attribute of a property element, if it has one.
fn rdf_resource(reader: &NsReader<&[u8]>, e: &BytesStart<'_>) -> Result<Option<String>, String> {
    for attr in e.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        if let (ResolveResult::Bound(Namespace(RDF)), local) =
            reader.resolver().resolve_attribute(attr.key)
        {
            if local.as_ref() == b"resource" {
                return Ok(Some(
                    attr.normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|e| e.to_string())?
                        .into(),
                ));
            }
        }
    }
    Ok(None)
}
