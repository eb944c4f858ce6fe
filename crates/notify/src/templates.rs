//! Message templates (minijinja), per event type and channel: `<type>.email.subject`,
//! `<type>.email.body`, optionally `<type>.webhook.json`; `default.*` when a type has none.
//! Spanish defaults are built in; files in `templates_dir` with the same names replace them.
//! Every template is compiled when the service starts: a broken one is reported (on `/ready`)
//! with its name and line, and events that need it are refused to the dead letters instead of
//! stopping the consumer.

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::Environment;
use serde_json::Value;
use telar_types::Envelope;

const BUILT_IN: &[(&str, &str)] = &[
    (
        "carpeta.document.authenticated.email.subject",
        include_str!("../templates/carpeta.document.authenticated.email.subject"),
    ),
    (
        "carpeta.document.authenticated.email.body",
        include_str!("../templates/carpeta.document.authenticated.email.body"),
    ),
    (
        "carpeta.transfer.confirmed.email.subject",
        include_str!("../templates/carpeta.transfer.confirmed.email.subject"),
    ),
    (
        "carpeta.transfer.confirmed.email.body",
        include_str!("../templates/carpeta.transfer.confirmed.email.body"),
    ),
    (
        "default.email.subject",
        include_str!("../templates/default.email.subject"),
    ),
    (
        "default.email.body",
        include_str!("../templates/default.email.body"),
    ),
];

/// An email ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

pub struct Templates {
    env: Environment<'static>,
    /// Templates that did not compile: name → error.
    broken: BTreeMap<String, String>,
}

impl Templates {
    /// The built-in templates, with those of `dir` (if any) in their place.
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        let mut sources: BTreeMap<String, String> = BUILT_IN
            .iter()
            .map(|(name, source)| ((*name).to_owned(), (*source).to_owned()))
            .collect();
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir)
                .map_err(|e| format!("templates_dir {}: {e}", dir.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if path.is_file()
                    && (name.ends_with(".subject")
                        || name.ends_with(".body")
                        || name.ends_with(".json"))
                {
                    let source = std::fs::read_to_string(&path)
                        .map_err(|e| format!("template {}: {e}", path.display()))?;
                    sources.insert(name.to_owned(), source);
                }
            }
        }
        let mut env = Environment::new();
        env.set_keep_trailing_newline(false);
        let mut broken = BTreeMap::new();
        for (name, source) in sources {
            if let Err(error) = env.add_template_owned(name.clone(), source) {
                broken.insert(name, error.to_string());
            }
        }
        Ok(Templates { env, broken })
    }

    /// Templates that failed to compile, for `/ready`.
    pub fn problems(&self) -> Vec<String> {
        self.broken
            .iter()
            .map(|(name, error)| format!("{name}: {error}"))
            .collect()
    }

    fn name_for(&self, ty: &str, part: &str) -> String {
        let own = format!("{ty}.{part}");
        if self.env.get_template(&own).is_ok() || self.broken.contains_key(&own) {
            own
        } else {
            format!("default.{part}")
        }
    }

    fn render(&self, name: &str, context: &Value) -> Result<String, String> {
        if let Some(error) = self.broken.get(name) {
            return Err(format!("template {name} does not compile: {error}"));
        }
        let template = self
            .env
            .get_template(name)
            .map_err(|e| format!("template {name}: {e}"))?;
        template
            .render(context)
            .map(|text| text.trim().to_owned())
            .map_err(|e| format!("template {name}: {e}"))
    }

    /// The email of `envelope`.
    pub fn email(&self, envelope: &Envelope) -> Result<Rendered, String> {
        let context = context(envelope);
        Ok(Rendered {
            subject: self.render(&self.name_for(&envelope.ty, "email.subject"), &context)?,
            body: self.render(&self.name_for(&envelope.ty, "email.body"), &context)?,
        })
    }

    /// The webhook body of `envelope`: its `<type>.webhook.json` template if there is one, else
    /// the envelope itself (CloudEvents JSON).
    pub fn webhook(&self, envelope: &Envelope) -> Result<Vec<u8>, String> {
        let name = format!("{}.webhook.json", envelope.ty);
        if self.env.get_template(&name).is_err() && !self.broken.contains_key(&name) {
            return Ok(envelope.to_json());
        }
        let text = self.render(&name, &context(envelope))?;
        serde_json::from_str::<Value>(&text)
            .map_err(|e| format!("template {name} does not render JSON: {e}"))?;
        Ok(text.into_bytes())
    }
}

/// What templates see: the envelope's attributes and its `data`.
fn context(envelope: &Envelope) -> Value {
    serde_json::json!({
        "id": envelope.id,
        "type": envelope.ty,
        "source": envelope.source,
        "subject": envelope.subject,
        "time": envelope.time.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        "data": envelope.data.clone().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_spanish_templates_render_and_overrides_replace_them() {
        let templates = Templates::load(None).unwrap_or_else(|e| panic!("{e}"));
        assert!(templates.problems().is_empty());
        let event = Envelope::new(
            "/signature",
            "carpeta.document.authenticated",
            serde_json::json!({"name": "Ana", "title": "Diploma de bachiller", "email": "ana@correo.co"}),
        );
        let email = templates.email(&event).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(email.subject, "Su documento fue autenticado");
        assert!(email.body.starts_with("Hola Ana:"), "{}", email.body);
        assert!(email.body.contains("«Diploma de bachiller»"));
        let other = Envelope::new("/x", "carpeta.citizen.registered", serde_json::json!({}));
        assert_eq!(
            templates
                .email(&other)
                .unwrap_or_else(|e| panic!("{e}"))
                .subject,
            "Notificación: carpeta.citizen.registered"
        );

        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path()
                .join("carpeta.document.authenticated.email.subject"),
            "Listo: {{ data.title }}",
        )
        .ok();
        std::fs::write(
            dir.path().join("carpeta.citizen.registered.email.body"),
            "{% if %}",
        )
        .ok();
        let templates = Templates::load(Some(dir.path())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            templates
                .email(&event)
                .unwrap_or_else(|e| panic!("{e}"))
                .subject,
            "Listo: Diploma de bachiller"
        );
        let problems = templates.problems();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("carpeta.citizen.registered.email.body"),
            "{problems:?}"
        );
        let refused = templates.email(&other).err().unwrap_or_default();
        assert!(refused.contains("does not compile"), "{refused}");
    }
}
