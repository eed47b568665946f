//! Signing keys: PKCS#8 PEM files in the keys directory, one per key, named
//! `<created, Unix milliseconds>-<alg>.pem`. The newest file signs; older keys
//! stay in the JWKS until every token they can have signed has expired. A
//! running server rescans the directory (see `KeyRing::refresh`), so
//! `keyward keys rotate` takes effect without a restart.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

/// The longest an access token can live (the ceiling of `access_token_ttl`).
/// A replaced key stays published this long, plus a minute of clock leeway.
pub const MAX_ACCESS_TOKEN_TTL: i64 = 86_400;
const RETIRED_KEY_GRACE_MS: i64 = (MAX_ACCESS_TOKEN_TTL + 60) * 1000;
/// How far ahead of this clock a key file's name may claim to have been
/// created. The newest name signs, so a name far in the future would pin the
/// signing key against every later rotation.
const FUTURE_LEEWAY_MS: i64 = 60_000;
/// How often verification looks at the keys directory's mtime: on SQLite the
/// CLI is another process with no change channel, and a removed key must stop
/// verifying at once. One stat per 100 ms.
const DIR_CHECK_EVERY_MS: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    EdDSA,
    ES256,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
        }
    }

    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            SigningAlg::EdDSA => Algorithm::EdDSA,
            SigningAlg::ES256 => Algorithm::ES256,
            SigningAlg::RS256 => Algorithm::RS256,
        }
    }
}

impl FromStr for SigningAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "EdDSA" => Ok(SigningAlg::EdDSA),
            "ES256" => Ok(SigningAlg::ES256),
            "RS256" => Ok(SigningAlg::RS256),
            other => Err(format!(
                "unsupported signing algorithm {other:?}: use EdDSA, ES256 or RS256"
            )),
        }
    }
}

impl std::fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("keys directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path}: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("no signing key in {0}: run `keyward keys generate`")]
    NoKey(PathBuf),
    #[error(
        "no usable signing key in {0}: every key file's name claims a creation time more than 60 s \
         ahead of this clock (check the clock, remove those files, or run `keyward keys rotate`)"
    )]
    OnlyFutureKeys(PathBuf),
    #[error(
        "key file {path} is group- or world-writable (mode {mode:03o}), so others could replace \
         the signing key: run `chmod 600 {path}`"
    )]
    Writable { path: PathBuf, mode: u32 },
    #[error("no published key has kid {0} (see `keyward keys list`)")]
    UnknownKid(String),
    #[error("{0} is the signing key: run `keyward keys rotate` first, then remove it")]
    SigningKeyRemoval(String),
    #[error("key generation failed")]
    Generation,
}

/// The private half, parsed once. (jsonwebtoken's `encode` parses the PKCS#8
/// document on every call, which for Ed25519 costs as much as the signature.)
pub enum Signer {
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
    EcdsaP256(aws_lc_rs::signature::EcdsaKeyPair),
    Rsa(aws_lc_rs::signature::RsaKeyPair),
}

impl Signer {
    fn from_pkcs8(alg: SigningAlg, der: &[u8]) -> Result<Signer, String> {
        use aws_lc_rs::signature::{
            EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        match alg {
            SigningAlg::EdDSA => Ed25519KeyPair::from_pkcs8(der)
                .map(Signer::Ed25519)
                .map_err(|e| e.to_string()),
            SigningAlg::ES256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map(Signer::EcdsaP256)
                .map_err(|e| e.to_string()),
            SigningAlg::RS256 => RsaKeyPair::from_pkcs8(der)
                .map(Signer::Rsa)
                .map_err(|e| e.to_string()),
        }
    }

    /// The JWS signature over `message` (RFC 7518 3.3 to 3.4, RFC 8037).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        use aws_lc_rs::rand::SystemRandom;
        match self {
            Signer::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Signer::EcdsaP256(pair) => {
                Ok(pair.sign(&SystemRandom::new(), message)?.as_ref().to_vec())
            }
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )?;
                Ok(signature)
            }
        }
    }
}

/// One loaded key.
pub struct SigningKey {
    pub kid: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    pub alg: SigningAlg,
    pub created_ms: i64,
    pub signer: Signer,
    /// The base64url JOSE header of every token this key signs.
    pub header_b64: String,
    pub decoding: DecodingKey,
    pub public_jwk: Jwk,
}

/// An immutable snapshot of the keys directory.
pub struct KeySet {
    /// The newest key; it signs every new token.
    pub signing: Arc<SigningKey>,
    by_kid: HashMap<String, Arc<SigningKey>>,
    /// The JWKS document, rendered once per snapshot.
    pub jwks_json: String,
    file_names: Vec<String>,
    /// When the earliest future-dated file, ignored now, comes within the
    /// leeway (and a rescan should take it in).
    future_due_ms: Option<i64>,
}

impl KeySet {
    pub fn find(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.by_kid.get(kid)
    }

    /// Kids of the published keys, the signing key first.
    pub fn kids(&self) -> Vec<String> {
        let mut keys: Vec<&Arc<SigningKey>> = self.by_kid.values().collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.created_ms));
        keys.iter().map(|k| k.kid.clone()).collect()
    }
}

pub struct KeyRing {
    dir: PathBuf,
    current: RwLock<Arc<KeySet>>,
    last_scan_ms: AtomicI64,
    /// When verification last looked at the directory's mtime, and what it saw.
    last_stat_ms: AtomicI64,
    dir_mtime: Mutex<Option<SystemTime>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Key file names in the directory, oldest first (by the time in the name).
fn key_file_names(dir: &Path) -> Result<Vec<String>, KeyError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if parse_file_name(&name).is_some() {
            names.push(name);
        }
    }
    // By number, not text: a longer number sorts first as text.
    names.sort_by_key(|n| (parse_file_name(n).map(|(c, _)| c), n.clone()));
    Ok(names)
}

fn is_future(name: &str, now: i64) -> bool {
    parse_file_name(name).is_some_and(|(created, _)| created > now.saturating_add(FUTURE_LEEWAY_MS))
}

fn parse_file_name(name: &str) -> Option<(i64, SigningAlg)> {
    let stem = name.strip_suffix(".pem")?;
    let (created, alg) = stem.split_once('-')?;
    Some((created.parse().ok()?, alg.parse().ok()?))
}

/// Writes a new key of `alg` into `dir` (created if missing) and returns its path.
/// The file is written under a temporary name and renamed, so a server scanning
/// the directory never sees half a key.
pub fn generate_key_file(dir: &Path, alg: SigningAlg) -> Result<PathBuf, KeyError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let der = match alg {
        SigningAlg::EdDSA => {
            let rng = ring::rand::SystemRandom::new();
            ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| KeyError::Generation)?
                .as_ref()
                .to_vec()
        }
        SigningAlg::ES256 => {
            let rng = ring::rand::SystemRandom::new();
            ring::signature::EcdsaKeyPair::generate_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &rng,
            )
            .map_err(|_| KeyError::Generation)?
            .as_ref()
            .to_vec()
        }
        SigningAlg::RS256 => {
            // ring cannot generate RSA keys; aws-lc-rs can.
            use aws_lc_rs::encoding::AsDer;
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| KeyError::Generation)?;
            let der = pair.as_der().map_err(|_| KeyError::Generation)?;
            der.as_ref().to_vec()
        }
    };
    let pem_text = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
    // Written under a unique temporary name, then linked into place: a link
    // never replaces an existing file, so two processes generating at once
    // (several servers on one keys directory) both keep their key.
    let tmp = dir.join(format!(".{}.pem.tmp", super::opaque::random_id("")));
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io_error(&tmp))?;
        file.write_all(pem_text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_error(&tmp))?;
    }
    let mut created = now_ms();
    let path = loop {
        let candidate = dir.join(format!("{created:013}-{alg}.pem"));
        match fs::hard_link(&tmp, &candidate) {
            Ok(()) => break candidate,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => created += 1,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(KeyError::Io {
                    path: candidate,
                    source: e,
                });
            }
        }
    };
    fs::remove_file(&tmp).map_err(io_error(&tmp))?;
    Ok(path)
}

/// Deletes the file of a published key that does not sign, taking it out of
/// the JWKS (and, on every server that rescans, the tokens it signed).
/// Returns the file removed.
pub fn remove_key_file(dir: &Path, kid: &str) -> Result<PathBuf, KeyError> {
    let set = load_key_set(dir, key_file_names(dir)?)?;
    if set.signing.kid == kid {
        return Err(KeyError::SigningKeyRemoval(kid.to_string()));
    }
    let key = set
        .find(kid)
        .ok_or_else(|| KeyError::UnknownKid(kid.to_string()))?;
    fs::remove_file(&key.path).map_err(io_error(&key.path))?;
    Ok(key.path.clone())
}

fn load_key(path: &Path, created_ms: i64, alg: SigningAlg) -> Result<SigningKey, KeyError> {
    let bad = |reason: String| KeyError::BadKey {
        path: path.to_path_buf(),
        reason,
    };
    let pem_bytes = read_key_file(path)?;
    let encoding = match alg {
        SigningAlg::EdDSA => EncodingKey::from_ed_pem(&pem_bytes),
        SigningAlg::ES256 => EncodingKey::from_ec_pem(&pem_bytes),
        SigningAlg::RS256 => EncodingKey::from_rsa_pem(&pem_bytes),
    }
    .map_err(|e| bad(e.to_string()))?;
    let mut jwk = match alg {
        // jsonwebtoken's Jwk::from_encoding_key expects a PKCS#8 v1 Ed25519
        // key; ring writes v2, so the public half is taken from ring.
        SigningAlg::EdDSA => {
            let parsed = pem::parse(&pem_bytes).map_err(|e| bad(e.to_string()))?;
            let pair =
                ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(parsed.contents())
                    .map_err(|e| bad(e.to_string()))?;
            use ring::signature::KeyPair as _;
            Jwk {
                common: CommonParameters::default(),
                algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                    key_type: OctetKeyPairType::OctetKeyPair,
                    curve: EllipticCurve::Ed25519,
                    x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                }),
            }
        }
        _ => Jwk::from_encoding_key(&encoding, alg.jwt_algorithm())
            .map_err(|e| bad(e.to_string()))?,
    };
    // RFC 7638 thumbprint over the required public members only.
    let kid = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|e| bad(e.to_string()))?;
    jwk.common = CommonParameters {
        public_key_use: Some(PublicKeyUse::Signature),
        key_id: Some(kid.clone()),
        key_algorithm: Some(match alg {
            SigningAlg::EdDSA => KeyAlgorithm::EdDSA,
            SigningAlg::ES256 => KeyAlgorithm::ES256,
            SigningAlg::RS256 => KeyAlgorithm::RS256,
        }),
        ..CommonParameters::default()
    };
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| bad(e.to_string()))?;
    let der = pem::parse(&pem_bytes).map_err(|e| bad(e.to_string()))?;
    let signer = Signer::from_pkcs8(alg, der.contents()).map_err(bad)?;
    // RFC 9068 2.1: typ "at+jwt".
    let header = serde_json::json!({"typ": "at+jwt", "alg": alg.as_str(), "kid": kid});
    let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
    Ok(SigningKey {
        kid,
        path: path.to_path_buf(),
        alg,
        created_ms,
        signer,
        header_b64,
        decoding,
        public_jwk: jwk,
    })
}

/// Refuses a key file that others than its owner may write.
fn check_mode(path: &Path, metadata: Option<&fs::Metadata>) -> Result<(), KeyError> {
    #[cfg(unix)]
    if let Some(metadata) = metadata {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(KeyError::Writable {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (path, metadata);
    Ok(())
}

/// A key file's bytes, refused when others may write it: whoever can write a
/// key file can sign tokens. The mode is read from the opened file, so it is
/// the mode of what is read.
fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    use std::io::Read as _;
    let mut file = fs::File::open(path).map_err(io_error(path))?;
    let metadata = file.metadata().map_err(io_error(path))?;
    check_mode(path, Some(&metadata))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_error(path))?;
    Ok(bytes)
}

/// Loads the directory: the newest key signs; a key replaced at time T stays
/// published until T plus the longest token lifetime. A file whose name lies
/// in the future is left out (and logged) until its time comes.
fn load_key_set(dir: &Path, names: Vec<String>) -> Result<KeySet, KeyError> {
    let now = now_ms();
    let mut loaded: Vec<Arc<SigningKey>> = Vec::new();
    let mut future_due_ms: Option<i64> = None;
    for name in names.iter().filter(|n| is_future(n, now)) {
        log::warn!(
            "key file {} is not used: its name claims a creation time more than 60 s ahead of \
             this clock, and the newest name would stay the signing key",
            dir.join(name).display()
        );
        if let Some((created, _)) = parse_file_name(name) {
            let due = created.saturating_sub(FUTURE_LEEWAY_MS);
            future_due_ms = Some(future_due_ms.map_or(due, |d| d.min(due)));
        }
    }
    // Newest first: each key's replacement time is the previous one's creation.
    let mut replaced_at: Option<i64> = None;
    for name in names.iter().rev().filter(|n| !is_future(n, now)) {
        let Some((created, alg)) = parse_file_name(name) else {
            continue;
        };
        let published = match replaced_at {
            None => true,
            Some(t) => now < t.saturating_add(RETIRED_KEY_GRACE_MS),
        };
        replaced_at = Some(created);
        if !published {
            break;
        }
        loaded.push(Arc::new(load_key(&dir.join(name), created, alg)?));
    }
    let signing = loaded.first().cloned().ok_or_else(|| {
        if future_due_ms.is_some() {
            KeyError::OnlyFutureKeys(dir.to_path_buf())
        } else {
            KeyError::NoKey(dir.to_path_buf())
        }
    })?;
    assemble(dir, signing, loaded, names, future_due_ms)
}

/// A snapshot of loaded keys, `signing` among them.
fn assemble(
    dir: &Path,
    signing: Arc<SigningKey>,
    loaded: Vec<Arc<SigningKey>>,
    file_names: Vec<String>,
    future_due_ms: Option<i64>,
) -> Result<KeySet, KeyError> {
    let jwks = jsonwebtoken::jwk::JwkSet {
        keys: loaded.iter().map(|k| k.public_jwk.clone()).collect(),
    };
    let jwks_json = serde_json::to_string(&jwks).map_err(|e| KeyError::BadKey {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let by_kid = loaded.into_iter().map(|k| (k.kid.clone(), k)).collect();
    Ok(KeySet {
        signing,
        by_kid,
        jwks_json,
        file_names,
        future_due_ms,
    })
}

/// The current set less the keys whose files are gone, when any are (and the
/// signing key is not among them). Used when a full reload fails, so that a
/// removal takes effect whatever else is wrong in the directory. Its file
/// names stay the old ones, so the next rescan tries the full reload again.
fn without_removed(dir: &Path, current: &KeySet, names: &[String]) -> Option<KeySet> {
    let present = |key: &SigningKey| {
        key.path
            .file_name()
            .is_some_and(|n| names.iter().any(|name| n == name.as_str()))
    };
    if !present(&current.signing) || current.by_kid.values().all(|k| present(k)) {
        return None;
    }
    let kept: Vec<Arc<SigningKey>> = current
        .by_kid
        .values()
        .filter(|k| present(k))
        .cloned()
        .collect();
    assemble(
        dir,
        current.signing.clone(),
        kept,
        current.file_names.clone(),
        current.future_due_ms,
    )
    .ok()
}

fn dir_mtime(dir: &Path) -> Option<SystemTime> {
    fs::metadata(dir).and_then(|m| m.modified()).ok()
}

impl KeyRing {
    /// Opens the keys directory. With `ensure_alg`, a key of that algorithm is
    /// generated when the directory has none or its newest key is of another
    /// algorithm (a changed `KEYWARD_SIGNING_ALG` is a rotation).
    pub fn open(dir: &Path, ensure_alg: Option<SigningAlg>) -> Result<KeyRing, KeyError> {
        if let Some(alg) = ensure_alg {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
            let names = key_file_names(dir)?;
            let now = now_ms();
            let newest_alg = names
                .iter()
                .rev()
                .find(|n| !is_future(n, now))
                .and_then(|n| parse_file_name(n))
                .map(|(_, a)| a);
            if newest_alg != Some(alg) {
                let path = generate_key_file(dir, alg)?;
                log::info!("generated a new {alg} signing key: {}", path.display());
            }
        }
        let mtime = dir_mtime(dir);
        let names = key_file_names(dir)?;
        let set = load_key_set(dir, names)?;
        Ok(KeyRing {
            dir: dir.to_path_buf(),
            current: RwLock::new(Arc::new(set)),
            last_scan_ms: AtomicI64::new(now_ms()),
            last_stat_ms: AtomicI64::new(now_ms()),
            dir_mtime: Mutex::new(mtime),
        })
    }

    pub fn current(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Rescans the directory and swaps in a new snapshot when its files
    /// changed (or when a retired key's time is up). Returns whether it did.
    pub fn refresh(&self) -> Result<bool, KeyError> {
        self.last_scan_ms.store(now_ms(), Ordering::Relaxed);
        let names = key_file_names(&self.dir)?;
        let current = self.current();
        let expired_retiree = current.by_kid.len() > 1
            && current.by_kid.values().any(|k| {
                k.created_ms != current.signing.created_ms
                    && now_ms()
                        > self
                            .replaced_at(&current, k)
                            .saturating_add(RETIRED_KEY_GRACE_MS)
            });
        let future_due = current.future_due_ms.is_some_and(|due| now_ms() >= due);
        if names == current.file_names && !expired_retiree && !future_due {
            // A key in use whose file became writable by others is reported
            // at every rescan (the loaded key stays: it was read while safe).
            for key in current.by_kid.values() {
                check_mode(&key.path, fs::metadata(&key.path).ok().as_ref())?;
            }
            return Ok(false);
        }
        match load_key_set(&self.dir, names.clone()) {
            Ok(set) => {
                log::info!("signing keys reloaded; signing kid {}", set.signing.kid);
                self.swap(set);
                Ok(true)
            }
            Err(e) => {
                if let Some(pruned) = without_removed(&self.dir, &current, &names) {
                    log::warn!("signing keys: removed keys dropped; the rest not reloaded");
                    self.swap(pruned);
                }
                Err(e)
            }
        }
    }

    fn swap(&self, set: KeySet) {
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(set),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(set),
        }
    }

    fn replaced_at(&self, set: &KeySet, key: &SigningKey) -> i64 {
        set.by_kid
            .values()
            .map(|k| k.created_ms)
            .filter(|&c| c > key.created_ms)
            .min()
            .unwrap_or(i64::MAX / 2)
    }

    /// Rescans when the keys directory changed since the last look, looking
    /// at most every 100 ms: a stat, and a directory read only after a
    /// change. Called on verification so that a key removed by another
    /// process (the CLI on SQLite) stops verifying at once.
    pub fn notice_changes(&self) {
        let now = now_ms();
        let last = self.last_stat_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < DIR_CHECK_EVERY_MS {
            return;
        }
        // One thread looks; the others go on with the current set.
        if self
            .last_stat_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let Some(modified) = dir_mtime(&self.dir) else {
            return;
        };
        let changed = match self.dir_mtime.lock() {
            Ok(mut seen) => seen.replace(modified) != Some(modified),
            Err(_) => true,
        };
        // A coarse mtime can hide a second change within one tick of the
        // first: while the mtime is recent, keep rescanning (names compare
        // cheaply; keys are parsed only when they differ).
        let recent = SystemTime::now()
            .duration_since(modified)
            .map_or(true, |age| age < Duration::from_secs(2));
        if changed || recent {
            if let Err(e) = self.refresh() {
                log::warn!("rescanning signing keys failed: {e}");
            }
        }
    }

    /// Looks a kid up, rescanning at most every 250 ms when it is unknown, so
    /// a key rotated on another node is found without waiting for the timer.
    pub fn find(&self, kid: &str) -> Option<Arc<SigningKey>> {
        let set = self.current();
        if let Some(key) = set.find(kid) {
            return Some(key.clone());
        }
        if now_ms().saturating_sub(self.last_scan_ms.load(Ordering::Relaxed)) < 250 {
            return None;
        }
        match self.refresh() {
            Ok(_) => self.current().find(kid).cloned(),
            Err(e) => {
                log::warn!("rescanning signing keys failed: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_a_loadable_key_with_a_thumbprint_kid() {
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
            let dir = tempfile::tempdir().unwrap();
            let ring = KeyRing::open(dir.path(), Some(alg)).unwrap();
            let set = ring.current();
            assert_eq!(set.signing.alg, alg);
            assert_eq!(set.signing.kid.len(), 43, "base64url SHA-256");
            let jwks: serde_json::Value = serde_json::from_str(&set.jwks_json).unwrap();
            assert_eq!(jwks["keys"][0]["kid"], set.signing.kid.as_str());
            assert_eq!(jwks["keys"][0]["alg"], alg.as_str());
            assert_eq!(jwks["keys"][0]["use"], "sig");
        }
    }

    #[test]
    fn rotation_keeps_the_old_key_published_and_signs_with_the_new() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), Some(SigningAlg::EdDSA)).unwrap();
        let old_kid = ring.current().signing.kid.clone();
        generate_key_file(dir.path(), SigningAlg::EdDSA).unwrap();
        assert!(ring.refresh().unwrap());
        let set = ring.current();
        assert_ne!(set.signing.kid, old_kid);
        assert_eq!(set.kids(), vec![set.signing.kid.clone(), old_kid.clone()]);
        assert!(ring.find(&old_kid).is_some());
    }

    #[test]
    fn a_key_replaced_longer_ago_than_the_longest_token_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let old = generate_key_file(dir.path(), SigningAlg::EdDSA).unwrap();
        // Pretend the old key was replaced two days ago.
        let two_days_ago = now_ms() - 2 * 86_400_000;
        fs::rename(
            &old,
            dir.path()
                .join(format!("{:013}-EdDSA.pem", two_days_ago - 1)),
        )
        .unwrap();
        let newer = generate_key_file(dir.path(), SigningAlg::EdDSA).unwrap();
        fs::rename(
            &newer,
            dir.path().join(format!("{two_days_ago:013}-EdDSA.pem")),
        )
        .unwrap();
        generate_key_file(dir.path(), SigningAlg::EdDSA).unwrap();
        let ring = KeyRing::open(dir.path(), None).unwrap();
        // The newest signs, the one it replaced is kept; the oldest is gone.
        assert_eq!(ring.current().kids().len(), 2);
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_group_or_world_writable_key_file_is_refused_at_open_and_at_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate_key_file(dir.path(), SigningAlg::EdDSA).unwrap();
        let ring = KeyRing::open(dir.path(), None).unwrap();
        let signing = ring.current().signing.kid.clone();
        // A new key that anyone may write is not taken in by a rescan.
        let second = generate_key_file(dir.path(), SigningAlg::EdDSA).unwrap();
        set_mode(&second, 0o666);
        let err = ring.refresh().unwrap_err().to_string();
        assert!(err.contains(&second.display().to_string()), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
        assert_eq!(ring.current().signing.kid, signing);
        // Nor at open.
        let err = KeyRing::open(dir.path(), None).err().unwrap().to_string();
        assert!(
            err.contains("writable") && err.contains("chmod 600"),
            "{err}"
        );
        // Group-writable is as bad; fixed, it loads.
        set_mode(&second, 0o620);
        assert!(KeyRing::open(dir.path(), None).is_err());
        set_mode(&second, 0o600);
        assert!(ring.refresh().unwrap());
        // A key already in use that becomes writable is reported at refresh.
        set_mode(&first, 0o606);
        let err = ring.refresh().unwrap_err().to_string();
        assert!(err.contains(&first.display().to_string()), "{err}");
    }

    #[test]
    fn a_key_file_named_in_the_future_cannot_pin_the_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let planted = generate_key_file(dir.path(), SigningAlg::EdDSA).unwrap();
        let an_hour_ahead = now_ms() + 3_600_000;
        let future = dir.path().join(format!("{an_hour_ahead:013}-EdDSA.pem"));
        fs::rename(&planted, &future).unwrap();
        // Alone, it is no signing key, and the error says why.
        let err = KeyRing::open(dir.path(), None).err().unwrap();
        assert!(matches!(err, KeyError::OnlyFutureKeys(_)), "{err}");
        assert!(err.to_string().contains("ahead of this clock"), "{err}");
        // Beside a real key it is neither used nor published, and later
        // rotations still take over.
        let ring = KeyRing::open(dir.path(), Some(SigningAlg::EdDSA)).unwrap();
        let set = ring.current();
        assert_eq!(set.kids(), vec![set.signing.kid.clone()]);
        assert!(set.signing.created_ms <= now_ms());
        assert!(!set.jwks_json.contains(&kid_of(&future)));
        generate_key_file(dir.path(), SigningAlg::EdDSA).unwrap();
        assert!(ring.refresh().unwrap());
        let rotated = ring.current();
        assert_ne!(rotated.signing.kid, set.signing.kid);
        assert_eq!(rotated.kids().len(), 2);
        // A name with more digits sorts by number, not text, and is as future.
        fs::copy(&future, dir.path().join("99999999999999-EdDSA.pem")).unwrap();
        assert!(ring.refresh().unwrap());
        assert_eq!(ring.current().signing.kid, rotated.signing.kid);
    }

    fn kid_of(path: &Path) -> String {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (created, alg) = parse_file_name(&name).unwrap();
        // Load it under a present-day name to learn its kid.
        let dir = tempfile::tempdir().unwrap();
        let copy = dir
            .path()
            .join(format!("{:013}-{alg}.pem", created.min(now_ms())));
        fs::copy(path, &copy).unwrap();
        load_key(&copy, 0, alg).unwrap().kid
    }

    #[test]
    fn removing_a_key_takes_it_out_and_the_signing_key_cannot_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), Some(SigningAlg::EdDSA)).unwrap();
        let old = ring.current().signing.kid.clone();
        generate_key_file(dir.path(), SigningAlg::EdDSA).unwrap();
        ring.refresh().unwrap();
        let signing = ring.current().signing.kid.clone();
        assert!(matches!(
            remove_key_file(dir.path(), &signing),
            Err(KeyError::SigningKeyRemoval(_))
        ));
        assert!(matches!(
            remove_key_file(dir.path(), "no-such-kid"),
            Err(KeyError::UnknownKid(_))
        ));
        remove_key_file(dir.path(), &old).unwrap();
        // Verification notices the directory changed (at most 100 ms later).
        std::thread::sleep(std::time::Duration::from_millis(
            DIR_CHECK_EVERY_MS as u64 + 10,
        ));
        ring.notice_changes();
        assert!(ring.current().find(&old).is_none());
        assert_eq!(ring.current().kids(), vec![signing]);
    }

    #[cfg(unix)]
    #[test]
    fn a_removed_key_leaves_even_when_a_bad_file_blocks_the_reload() {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::open(dir.path(), Some(SigningAlg::EdDSA)).unwrap();
        let old = ring.current().signing.clone();
        generate_key_file(dir.path(), SigningAlg::EdDSA).unwrap();
        ring.refresh().unwrap();
        let signing = ring.current().signing.kid.clone();
        let planted = generate_key_file(dir.path(), SigningAlg::EdDSA).unwrap();
        set_mode(&planted, 0o666);
        fs::remove_file(&old.path).unwrap();
        assert!(matches!(ring.refresh(), Err(KeyError::Writable { .. })));
        let set = ring.current();
        assert!(set.find(&old.kid).is_none());
        assert_eq!(set.kids(), vec![signing.clone()]);
        assert!(!set.jwks_json.contains(&old.kid));
        // Fixed, the new key is taken in.
        set_mode(&planted, 0o600);
        assert!(ring.refresh().unwrap());
        assert_ne!(ring.current().signing.kid, signing);
    }
}
