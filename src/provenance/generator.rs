//! Generator UIs: the prompt and settings that AUTOMATIC1111/Forge, ComfyUI, InvokeAI, Fooocus,
//! NovelAI and Midjourney write into PNG text chunks or EXIF, and an EXIF/PNG `Software` that
//! names a generator. Each of these declares generation by a model.
//!
//! A field counts only when its content has the generator's shape (A1111's `Steps: ...` line,
//! ComfyUI's node graph, well-formed JSON where the UI writes JSON): a key alone is too easy to
//! collide with.

use super::container::TextField;
use super::{Declaration, Kind};

/// Lower-case names that a `Software` field uses for a generator, matched as whole words.
const GENERATOR_SOFTWARE: &[&str] = &[
    "midjourney",
    "dall-e",
    "dall·e",
    "chatgpt",
    "gpt-4o",
    "stable diffusion",
    "automatic1111",
    "comfyui",
    "invokeai",
    "fooocus",
    "novelai",
    "adobe firefly",
    "imagen",
    "ideogram",
    "leonardo.ai",
    "bing image creator",
    "image creator from microsoft designer",
    "microsoft designer",
    "dreamstudio",
    "nightcafe",
    "playground ai",
];

/// The declarations the fields make, and the problems met reading them.
pub fn recognise(fields: &[TextField]) -> (Vec<Declaration>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let mut declare = |kind, generator: &str| {
        found.push(Declaration {
            kind,
            generator: Some(generator.to_string()),
            ai: true,
        })
    };
    let mut json_ok =
        |what: &str, value: &str| match serde_json::from_str::<serde_json::Value>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(format!("{what}: not valid JSON ({e})"));
                None
            }
        };

    for f in fields {
        let value = f.value.trim();
        match f.key.as_str() {
            "fooocus_scheme" => declare(Kind::Fooocus, "Fooocus"),
            "parameters" | "UserComment" if is_a1111(value) => {
                let ui = if value.contains("Version: f") {
                    "Forge"
                } else {
                    "AUTOMATIC1111"
                };
                declare(Kind::A1111, ui);
            }
            "prompt" if json_ok("comfyui prompt", value).is_some_and(|v| is_comfy_prompt(&v)) => {
                declare(Kind::ComfyUi, "ComfyUI")
            }
            "workflow"
                if json_ok("comfyui workflow", value).is_some_and(|v| is_comfy_workflow(&v)) =>
            {
                declare(Kind::ComfyUi, "ComfyUI")
            }
            // ComfyUI's WebP output: "prompt:{...}" and "workflow:{...}" in Model and Make.
            "Make" | "Model" => {
                if let Some(json) = value.strip_prefix("prompt:") {
                    if json_ok("comfyui prompt", json).is_some_and(|v| is_comfy_prompt(&v)) {
                        declare(Kind::ComfyUi, "ComfyUI");
                    }
                } else if let Some(json) = value.strip_prefix("workflow:") {
                    if json_ok("comfyui workflow", json).is_some_and(|v| is_comfy_workflow(&v)) {
                        declare(Kind::ComfyUi, "ComfyUI");
                    }
                }
            }
            "invokeai_metadata" | "sd-metadata"
                if json_ok(&format!("invokeai {}", f.key), value)
                    .is_some_and(|v| v.is_object()) =>
            {
                declare(Kind::InvokeAi, "InvokeAI")
            }
            "Dream" if !value.is_empty() => declare(Kind::InvokeAi, "InvokeAI"),
            "Software" if value.eq_ignore_ascii_case("NovelAI") => {
                declare(Kind::NovelAi, "NovelAI")
            }
            "Software" if names_generator(value) => declare(
                Kind::ExifSoftware,
                &value.chars().take(100).collect::<String>(),
            ),
            "Description" | "ImageDescription" if is_midjourney_description(value) => {
                declare(Kind::Midjourney, "Midjourney")
            }
            _ => {}
        }
    }
    (found, problems)
}

/// A1111's infotext: the prompt, then a settings line such as
/// `Steps: 15, Sampler: UniPC, CFG scale: 5, Seed: 235284042, ...`.
fn is_a1111(text: &str) -> bool {
    text.contains("Steps: ")
        && ["Sampler: ", "Seed: ", "CFG scale: "]
            .iter()
            .any(|k| text.contains(k))
}

/// ComfyUI's API prompt: an object of nodes, each with a `class_type`.
fn is_comfy_prompt(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|nodes| {
        !nodes.is_empty() && nodes.values().all(|n| n.get("class_type").is_some())
    })
}

/// ComfyUI's UI workflow: an object with a `nodes` array.
fn is_comfy_workflow(v: &serde_json::Value) -> bool {
    v.get("nodes").is_some_and(|n| n.is_array())
}

/// Midjourney ends its description with `Job ID: <uuid>`.
fn is_midjourney_description(text: &str) -> bool {
    let Some(at) = text.rfind("Job ID: ") else {
        return false;
    };
    let id = text[at + "Job ID: ".len()..].trim();
    id.len() == 36
        && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        && id.matches('-').count() == 4
}

/// Whether a `Software` value names a generator (whole words, any case).
fn names_generator(software: &str) -> bool {
    let lower = software.to_lowercase();
    GENERATOR_SOFTWARE.iter().any(|name| {
        lower.match_indices(name).any(|(at, _)| {
            let before = lower[..at].chars().next_back();
            let after = lower[at + name.len()..].chars().next();
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(fields: &[(&str, &str)]) -> Vec<(Kind, Option<String>)> {
        let fields: Vec<TextField> = fields.iter().map(|(k, v)| TextField::new(*k, *v)).collect();
        recognise(&fields)
            .0
            .into_iter()
            .map(|d| (d.kind, d.generator))
            .collect()
    }

    #[test]
    fn editors_and_cameras_are_not_generators() {
        for software in [
            "Adobe Photoshop 25.0 (Windows)",
            "Adobe Photoshop Lightroom Classic 13.1 (Macintosh)",
            "GIMP 2.10.36",
            "Google",
            "HDR+ 1.0.540104767zd",
            "Imagenomic Portraiture",
            "ver.1.00",
        ] {
            assert!(kinds(&[("Software", software)]).is_empty(), "{software}");
        }
        assert_eq!(
            kinds(&[("Software", "Stable Diffusion 1.5")]),
            vec![(Kind::ExifSoftware, Some("Stable Diffusion 1.5".into()))]
        );
    }

    #[test]
    fn content_must_have_the_generator_shape() {
        // A plain "parameters" note or a camera's comment is not A1111's infotext.
        assert!(kinds(&[("parameters", "f/2.8, 1/250 s")]).is_empty());
        assert!(kinds(&[("UserComment", "Steps to reproduce")]).is_empty());
        assert!(kinds(&[("prompt", "{\"text\": \"hello\"}")]).is_empty());
        assert!(kinds(&[("Description", "a cat. Job ID: 42")]).is_empty());
        assert_eq!(
            kinds(&[(
                "Description",
                "a cat --ar 3:2 Job ID: 0ab1c2d3-4e5f-6789-abcd-ef0123456789"
            )]),
            vec![(Kind::Midjourney, Some("Midjourney".into()))]
        );
        assert_eq!(
            kinds(&[(
                "Model",
                "prompt:{\"3\": {\"inputs\": {}, \"class_type\": \"KSampler\"}}"
            )]),
            vec![(Kind::ComfyUi, Some("ComfyUI".into()))]
        );
    }

    #[test]
    fn malformed_json_is_a_problem_not_a_declaration() {
        let fields = [TextField::new("workflow", "{\"nodes\": [")];
        let (found, problems) = recognise(&fields);
        assert!(found.is_empty());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("comfyui workflow"), "{problems:?}");
    }
}
