//! Sending expiry notices by SMTP (API.md section 4): `KEYWARD_SMTP_URL`
//! (`smtp://user:pass@host:587` with STARTTLS, `smtps://host:465` with TLS
//! from the first byte), `KEYWARD_SMTP_FROM`, and `KEYWARD_SMTP_CA_FILE` for
//! a CA of one's own. `smtp://` upgrades with STARTTLS whenever the server
//! offers it and, when the URL carries a password, refuses to go on
//! without it: a password never crosses the wire in the clear.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use crate::store::models::NoticeRow;

/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Mailer {
    transport: SmtpTransport,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

/// `KEYWARD_SMTP_URL` with its password hidden, for logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(not a URL)".into(),
    }
}

/// `%XX` sequences of a URL's user or password, decoded (a `%` not
/// followed by two hex digits stays as it is).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

impl Mailer {
    /// The mailer for the settings; an error names what is wrong (never
    /// the password).
    pub fn new(url: &str, from: &str, ca_file: Option<&std::path::Path>) -> Result<Mailer, String> {
        let parsed =
            url::Url::parse(url).map_err(|e| format!("KEYWARD_SMTP_URL is not a URL ({e})"))?;
        let host = parsed
            .host_str()
            .ok_or("KEYWARD_SMTP_URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("KEYWARD_SMTP_FROM is not an address ({e})"))?;
        let mut tls = TlsParameters::builder(host.clone());
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("KEYWARD_SMTP_CA_FILE {}: {e}", path.display()))?;
            let ca = Certificate::from_pem(&pem)
                .map_err(|e| format!("KEYWARD_SMTP_CA_FILE {}: {e}", path.display()))?;
            tls = tls.add_root_certificate(ca);
        }
        let tls = tls
            .build()
            .map_err(|e| format!("TLS settings for {host}: {e}"))?;
        let credentials = (!parsed.username().is_empty()).then(|| {
            Credentials::new(
                percent_decode(parsed.username()),
                percent_decode(parsed.password().unwrap_or("")),
            )
        });
        let (mode, default_port) = match parsed.scheme() {
            "smtps" => (Tls::Wrapper(tls), 465),
            // With credentials, STARTTLS or nothing; without, STARTTLS when
            // offered (a relay on a private network may not offer it).
            "smtp" if credentials.is_some() => (Tls::Required(tls), 587),
            "smtp" => (Tls::Opportunistic(tls), 587),
            other => {
                return Err(format!(
                    "KEYWARD_SMTP_URL scheme {other:?}: use smtp:// (STARTTLS) or smtps:// (TLS)"
                ))
            }
        };
        let mut builder = SmtpTransport::builder_dangerous(host)
            .port(parsed.port().unwrap_or(default_port))
            .tls(mode)
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// Sends one notice: a text and an HTML part. The error is what the
    /// notice's `last_error` says.
    pub fn send(&self, notice: &NoticeRow) -> Result<(), String> {
        let to: Mailbox = notice
            .recipient
            .parse()
            .map_err(|e| format!("recipient {:?}: {e}", notice.recipient))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(notice.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                notice.body_text.clone(),
                notice.body_html.clone(),
            ))
            .map_err(|e| format!("building the message: {e}"))?;
        self.transport
            .send(&message)
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_never_shown_and_percent_signs_decode() {
        assert_eq!(
            redact("smtp://mailer:s%40cret@mail.example.com:587"),
            "smtp://mailer:***@mail.example.com:587"
        );
        assert_eq!(percent_decode("s%40cret%2F"), "s@cret/");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn settings_are_checked_with_a_message_naming_the_setting() {
        let err = Mailer::new("http://mail.example.com", "a@example.com", None).unwrap_err();
        assert!(err.contains("KEYWARD_SMTP_URL scheme"), "{err}");
        let err = Mailer::new("smtp://mail.example.com", "not an address", None).unwrap_err();
        assert!(err.contains("KEYWARD_SMTP_FROM"), "{err}");
        let err = Mailer::new(
            "smtp://mail.example.com",
            "a@example.com",
            Some(std::path::Path::new("/nonexistent/ca.pem")),
        )
        .unwrap_err();
        assert!(err.contains("KEYWARD_SMTP_CA_FILE"), "{err}");
        assert!(Mailer::new(
            "smtps://u:p@mail.example.com",
            "keyward <a@example.com>",
            None
        )
        .is_ok());
    }
}
