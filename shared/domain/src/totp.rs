//! Two-factor login with time-based one-time passwords (TOTP, RFC 6238): the secret an
//! authenticator app shares with us, the link and QR code that enrol it, single-use code
//! verification, and the recovery codes that stand in for a lost phone.
//!
//! Pure rules, no storage: the auth service keeps the secret, the last used time step and
//! the recovery-code hashes, and hands them back in.

use crate::accounts::Email;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use qrcode::QrCode;
use qrcode::render::svg;
use qrcode::types::QrError;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// The name authenticator apps show next to the code.
pub const ISSUER: &str = "Leasedesk";
/// Seconds per time step: 30 is what authenticator apps use.
pub const PERIOD_SECONDS: u64 = 30;
/// Digits per code: six is what authenticator apps show.
pub const DIGITS: u8 = 6;
/// Steps either side of now that a code may belong to, for phone clocks that drift and
/// users who type while the code changes (RFC 6238 §5.2 recommends one).
pub const ALLOWED_SKEW_STEPS: u64 = 1;
/// 160 bits: the secret length RFC 4226 §4 recommends.
pub const SECRET_BYTES: usize = 20;
/// 20 bytes are exactly 32 base32 characters, so the stored form needs no padding.
const SECRET_BASE32_CHARS: usize = 32;

/// The operating system could not provide secure random numbers.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("no secure random numbers available: {0}")]
pub struct RandomnessUnavailable(getrandom::Error);

/// Why a one-time code was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// Not six digits, even after removing spaces.
    #[error("a code is six digits")]
    Malformed,
    /// Six digits, but not the code of any step in the accepted window.
    #[error("the code is wrong or has expired")]
    Invalid,
    /// The right code, but its step was already used to log in: RFC 6238 §5.2 lets a code
    /// work once, so someone who saw it cannot replay it within its 30 seconds.
    #[error("the code has already been used; wait for the next one")]
    AlreadyUsed,
}

/// A stored TOTP secret that is not 32 characters of unpadded upper-case base32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a TOTP secret (32 characters of base32)")]
pub struct InvalidTotpSecret;

/// The secret shared with a user's authenticator app: 20 random bytes. It is stored and
/// serialized as unpadded RFC 4648 base32, the form authenticator apps take, and `Debug`
/// never prints it.
#[derive(Clone)]
pub struct TotpSecret([u8; SECRET_BYTES]);

impl TotpSecret {
    /// A new secret from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        let mut bytes = [0; SECRET_BYTES];
        getrandom::fill(&mut bytes).map_err(RandomnessUnavailable)?;
        Ok(Self(bytes))
    }

    /// Reads a secret as [`Self::to_base32`] wrote it. Only that spelling is accepted, so
    /// a secret has one stored form.
    pub fn from_base32(encoded: &str) -> Result<Self, InvalidTotpSecret> {
        let is_base32 = |c: u8| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c);
        if encoded.len() != SECRET_BASE32_CHARS || !encoded.bytes().all(is_base32) {
            return Err(InvalidTotpSecret);
        }
        let secret = Secret::try_from_base32(encoded).map_err(|_| InvalidTotpSecret)?;
        let bytes = secret
            .as_bytes()
            .try_into()
            .map_err(|_| InvalidTotpSecret)?;
        Ok(Self(bytes))
    }

    /// Unpadded upper-case base32, as stored and as typed into an app by hand.
    pub fn to_base32(&self) -> String {
        Secret::from(self.0).to_base32()
    }
}

impl PartialEq for TotpSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for TotpSecret {}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

impl Serialize for TotpSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base32())
    }
}

impl<'de> Deserialize<'de> for TotpSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let encoded = String::deserialize(deserializer)?;
        Self::from_base32(&encoded).map_err(D::Error::custom)
    }
}

/// Checks a code a user typed from their authenticator app. On success it returns the
/// time step (Unix time / 30) the code belongs to: store it as the user's last used step
/// and pass it back next time, so that this code, and any older one, is refused.
///
/// Spaces are ignored (apps show codes as `123 456`); a code of the current step or one
/// step either side is accepted.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    now: DateTime<Utc>,
    last_used_step: Option<u64>,
) -> Result<u64, TotpError> {
    verify_with(
        &CodeGenerator::for_product(secret),
        code,
        now,
        last_used_step,
    )
}

fn verify_with(
    generator: &CodeGenerator,
    code: &str,
    now: DateTime<Utc>,
    last_used_step: Option<u64>,
) -> Result<u64, TotpError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != usize::from(generator.digits) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpError::Malformed);
    }
    // A clock before 1970 is broken, and no code belongs to such a time.
    let unix_seconds = u64::try_from(now.timestamp()).map_err(|_| TotpError::Invalid)?;
    let current_step = unix_seconds / PERIOD_SECONDS;
    let window = current_step.saturating_sub(ALLOWED_SKEW_STEPS)
        ..=current_step.saturating_add(ALLOWED_SKEW_STEPS);
    // Every step is checked, even after a match, so the time taken does not tell which
    // step matched; and a code that happens to match both a used and a fresh step is
    // accepted for the fresh one.
    let matched_steps: Vec<u64> = window
        .filter(|&step| generator.matches_at_step(&code, step))
        .collect();
    let is_fresh = |step: &&u64| last_used_step.is_none_or(|last_used| **step > last_used);
    match matched_steps.iter().find(is_fresh) {
        Some(&step) => Ok(step),
        None if matched_steps.is_empty() => Err(TotpError::Invalid),
        None => Err(TotpError::AlreadyUsed),
    }
}

/// The codes of one secret under one RFC 6238 profile. Ours is HMAC-SHA1, six digits and
/// 30 seconds; the RFC's test vectors also use SHA-256, SHA-512 and eight digits, and run
/// through this same code.
struct CodeGenerator {
    totp: Totp,
    digits: u8,
}

impl CodeGenerator {
    fn for_product(secret: &TotpSecret) -> Self {
        Self::new(&secret.0, Algorithm::SHA1, DIGITS)
    }

    fn new(secret: &[u8], algorithm: Algorithm, digits: u8) -> Self {
        // `build` would check what holds here by construction (6 or 8 digits, a secret of
        // at least 128 bits, a non-zero period; see `product_profile_is_rfc_compliant`).
        // No skew: `verify_with` walks the window itself, to learn which step matched.
        let totp = Builder::new()
            .with_algorithm(algorithm)
            .with_digits(digits)
            .with_secret(secret)
            .with_step_duration(PERIOD_SECONDS)
            .with_skew(0)
            .build_noncompliant();
        Self { totp, digits }
    }

    /// Whether `code` is the code of exactly this step. totp-rs compares in constant time.
    fn matches_at_step(&self, code: &str, step: u64) -> bool {
        step.checked_mul(PERIOD_SECONDS)
            .and_then(|step_start| self.totp.check(code, step_start))
            .is_some()
    }

    #[cfg(test)]
    fn code_at(&self, unix_seconds: u64) -> String {
        self.totp.generate(unix_seconds).to_string()
    }
}

/// The QR code of an enrolment link could not be drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the enrolment link does not fit in a QR code: {0}")]
pub struct QrCodeError(#[source] QrError);

/// What a user needs to add Leasedesk to an authenticator app. It carries the secret, so
/// it is shown once and `Debug` does not print it.
#[derive(Clone)]
pub struct TotpEnrolment {
    /// The `otpauth://totp/...` key URI, for a link on the phone itself.
    pub otpauth_uri: String,
    /// A QR code of the URI, as an SVG document.
    pub qr_code_svg: String,
    /// The same SVG as a `data:image/svg+xml;base64,...` URI, for an `<img src>`.
    pub qr_code_data_uri: String,
}

impl TotpEnrolment {
    pub fn new(secret: &TotpSecret, account: &Email) -> Result<Self, QrCodeError> {
        let otpauth_uri = otpauth_uri(secret, account);
        let qr_code = QrCode::new(otpauth_uri.as_bytes()).map_err(QrCodeError)?;
        let qr_code_svg = qr_code
            .render::<svg::Color<'_>>()
            .min_dimensions(256, 256)
            .build();
        let qr_code_data_uri = format!(
            "data:image/svg+xml;base64,{}",
            BASE64.encode(qr_code_svg.as_bytes())
        );
        Ok(Self {
            otpauth_uri,
            qr_code_svg,
            qr_code_data_uri,
        })
    }
}

impl fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpEnrolment").finish_non_exhaustive()
    }
}

/// Everything but RFC 3986's unreserved characters is escaped in the label and issuer, so
/// an address like `anna+2fa@example.se` survives apps that would read `+` as a space.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The key URI in the format authenticator apps read (Google's "Key Uri Format"). The
/// parameters that have defaults are spelled out anyway: some apps do not assume them.
fn otpauth_uri(secret: &TotpSecret, account: &Email) -> String {
    let issuer = utf8_percent_encode(ISSUER, URI_COMPONENT);
    let account = utf8_percent_encode(account.as_str(), URI_COMPONENT);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}\
         &algorithm=SHA1&digits={DIGITS}&period={PERIOD_SECONDS}",
        secret = secret.to_base32(),
    )
}

/// How many recovery codes a user gets at a time.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Crockford's base32 alphabet: no i, l, o or u, so no character reads as another.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Twelve characters of 5 bits: 60 random bits a code.
const RECOVERY_CODE_CHARS: usize = 12;
const RECOVERY_CODE_BITS: u32 = 60;
const RECOVERY_SALT_BYTES: usize = 16;
const RECOVERY_DIGEST_BYTES: usize = 32;

/// A recovery code as hashed: its twelve characters, lower case, without dashes.
type RecoveryCodeChars = [u8; RECOVERY_CODE_CHARS];

/// Single-use codes that let a user log in without their authenticator app.
pub struct RecoveryCodes;

impl RecoveryCodes {
    /// Ten new codes, `xxxx-xxxx-xxxx`, to show the user once, and their hashes to store,
    /// in the same order.
    pub fn generate() -> Result<(Vec<String>, Vec<RecoveryCodeHash>), RandomnessUnavailable> {
        let mut shown_once = Vec::with_capacity(RECOVERY_CODE_COUNT);
        let mut hashes = Vec::with_capacity(RECOVERY_CODE_COUNT);
        for _ in 0..RECOVERY_CODE_COUNT {
            let code = recovery_code_from_bits(getrandom::u64().map_err(RandomnessUnavailable)?);
            let mut salt = [0; RECOVERY_SALT_BYTES];
            getrandom::fill(&mut salt).map_err(RandomnessUnavailable)?;
            hashes.push(RecoveryCodeHash::of(&code, salt));
            shown_once.push(display_recovery_code(&code));
        }
        Ok((shown_once, hashes))
    }

    /// Which stored hash `input` is the code of, if any; the caller then deletes that hash
    /// so the code works once. Case, spaces and dashes do not matter, and `o`, `i` and `l`
    /// are read as the `0` and `1` a user mistook them for.
    pub fn redeem(input: &str, hashes: &[RecoveryCodeHash]) -> Option<usize> {
        let code = normalize_recovery_code(input)?;
        let mut matched = None;
        // Every hash is compared, so the time taken does not tell which one matched.
        for (index, hash) in hashes.iter().enumerate() {
            if hash.matches(&code) && matched.is_none() {
                matched = Some(index);
            }
        }
        matched
    }
}

/// The low 60 bits of `random`, five at a time, as alphabet characters.
fn recovery_code_from_bits(random: u64) -> RecoveryCodeChars {
    let mut code = [0; RECOVERY_CODE_CHARS];
    for (position, letter) in code.iter_mut().enumerate() {
        let shift = RECOVERY_CODE_BITS - 5 * (position as u32 + 1);
        *letter = RECOVERY_ALPHABET[((random >> shift) & 0b1_1111) as usize];
    }
    code
}

fn display_recovery_code(code: &RecoveryCodeChars) -> String {
    code.chunks(4)
        .map(|group| {
            group
                .iter()
                .map(|&byte| char::from(byte))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn normalize_recovery_code(input: &str) -> Option<RecoveryCodeChars> {
    let mut code = [0; RECOVERY_CODE_CHARS];
    let mut len = 0;
    for typed in input.chars() {
        if typed.is_whitespace() || typed == '-' {
            continue;
        }
        let letter = match typed.to_ascii_lowercase() {
            'o' => b'0',
            'i' | 'l' => b'1',
            other if other.is_ascii() && RECOVERY_ALPHABET.contains(&(other as u8)) => other as u8,
            _ => return None,
        };
        *code.get_mut(len)? = letter;
        len += 1;
    }
    (len == RECOVERY_CODE_CHARS).then_some(code)
}

/// A recovery code as stored: SHA-256 of a random salt and the code.
///
/// A fast hash is enough here, unlike for passwords: the code is 60 uniformly random bits,
/// so a stolen hash still takes about 2^59 guesses on average, and a slow hash like argon2
/// would only make every redemption (ten comparisons) expensive. The per-code salt stops
/// one search from testing a guess against every user's codes at once.
///
/// Serialized as base64 of the 16-byte salt followed by the 32-byte digest.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCodeHash {
    salt: [u8; RECOVERY_SALT_BYTES],
    digest: [u8; RECOVERY_DIGEST_BYTES],
}

/// A stored recovery-code hash that is not 48 bytes of base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a recovery-code hash")]
pub struct InvalidRecoveryCodeHash;

impl RecoveryCodeHash {
    fn of(code: &RecoveryCodeChars, salt: [u8; RECOVERY_SALT_BYTES]) -> Self {
        let digest = Sha256::new()
            .chain_update(salt)
            .chain_update(code)
            .finalize()
            .into();
        Self { salt, digest }
    }

    fn matches(&self, code: &RecoveryCodeChars) -> bool {
        let candidate = Self::of(code, self.salt);
        candidate
            .digest
            .as_slice()
            .ct_eq(self.digest.as_slice())
            .into()
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode([self.salt.as_slice(), self.digest.as_slice()].concat())
    }

    pub fn from_base64(encoded: &str) -> Result<Self, InvalidRecoveryCodeHash> {
        let bytes = BASE64
            .decode(encoded)
            .map_err(|_| InvalidRecoveryCodeHash)?;
        let (salt, digest) = bytes
            .split_at_checked(RECOVERY_SALT_BYTES)
            .ok_or(InvalidRecoveryCodeHash)?;
        Ok(Self {
            salt: salt.try_into().map_err(|_| InvalidRecoveryCodeHash)?,
            digest: digest.try_into().map_err(|_| InvalidRecoveryCodeHash)?,
        })
    }
}

impl fmt::Debug for RecoveryCodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RecoveryCodeHash")
            .field(&self.to_base64())
            .finish()
    }
}

impl Serialize for RecoveryCodeHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for RecoveryCodeHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let encoded = String::deserialize(deserializer)?;
        Self::from_base64(&encoded).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B: time, and the eight-digit codes for SHA-1, SHA-256, SHA-512.
    type RfcVector = (u64, &'static str, &'static str, &'static str);
    const RFC_6238_VECTORS: [RfcVector; 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1111111109, "07081804", "68084774", "25091201"),
        (1111111111, "14050471", "67062674", "99943326"),
        (1234567890, "89005924", "91819424", "93441116"),
        (2000000000, "69279037", "90698825", "38618901"),
        (20000000000, "65353130", "77737706", "47863826"),
    ];
    const SHA1_SEED: &[u8; 20] = b"12345678901234567890";
    const SHA256_SEED: &[u8; 32] = b"12345678901234567890123456789012";
    const SHA512_SEED: &[u8; 64] =
        b"1234567890123456789012345678901234567890123456789012345678901234";

    fn at(unix_seconds: u64) -> DateTime<Utc> {
        let seconds = i64::try_from(unix_seconds).expect("test times fit in i64");
        DateTime::from_timestamp(seconds, 0).expect("test times are in chrono's range")
    }

    fn rfc_secret() -> TotpSecret {
        TotpSecret(*SHA1_SEED)
    }

    /// Each vector's code is generated at its time, and verification accepts it for
    /// exactly its step, once.
    fn assert_rfc_vectors(generator: &CodeGenerator, code_of: fn(&RfcVector) -> &'static str) {
        for vector in &RFC_6238_VECTORS {
            let (time, code) = (vector.0, code_of(vector));
            assert_eq!(generator.code_at(time), code, "code at {time}");
            let step = time / PERIOD_SECONDS;
            assert_eq!(
                verify_with(generator, code, at(time), None),
                Ok(step),
                "verify at {time}"
            );
            assert_eq!(
                verify_with(generator, code, at(time), Some(step)),
                Err(TotpError::AlreadyUsed),
                "reuse at {time}"
            );
        }
    }

    #[test]
    fn totp_rfc6238_sha1_vectors() {
        assert_rfc_vectors(&CodeGenerator::new(SHA1_SEED, Algorithm::SHA1, 8), |v| v.1);
    }

    #[test]
    fn totp_rfc6238_sha256_vectors() {
        assert_rfc_vectors(
            &CodeGenerator::new(SHA256_SEED, Algorithm::SHA256, 8),
            |v| v.2,
        );
    }

    #[test]
    fn totp_rfc6238_sha512_vectors() {
        assert_rfc_vectors(
            &CodeGenerator::new(SHA512_SEED, Algorithm::SHA512, 8),
            |v| v.3,
        );
    }

    #[test]
    fn verify_accepts_the_rfc_sha1_codes_as_six_digits() {
        // A six-digit code is the eight-digit one modulo 10^6: its last six digits.
        for (time, sha1_code, _, _) in RFC_6238_VECTORS {
            assert_eq!(
                verify(&rfc_secret(), &sha1_code[2..], at(time), None),
                Ok(time / PERIOD_SECONDS),
                "at {time}"
            );
        }
    }

    #[test]
    fn verify_accepts_one_step_either_side_and_says_which() {
        // 1111111109 and 1111111111 fall in neighbouring steps.
        let earlier_step = 1111111109 / PERIOD_SECONDS;
        let later_step = 1111111111 / PERIOD_SECONDS;
        assert_eq!(later_step, earlier_step + 1);
        assert_eq!(
            verify(&rfc_secret(), "081804", at(1111111111), None),
            Ok(earlier_step)
        );
        assert_eq!(
            verify(&rfc_secret(), "050471", at(1111111109), None),
            Ok(later_step)
        );
    }

    #[test]
    fn verify_refuses_codes_outside_the_window() {
        let generator = CodeGenerator::for_product(&rfc_secret());
        let now: u64 = 1_700_000_000;
        for steps_away in [-3_i64, -2, 2, 3] {
            let then = now.checked_add_signed(steps_away * 30).expect("in range");
            let code = generator.code_at(then);
            assert_eq!(
                verify(&rfc_secret(), &code, at(now), None),
                Err(TotpError::Invalid),
                "{steps_away} steps away"
            );
        }
        for steps_away in [-1_i64, 0, 1] {
            let then = now.checked_add_signed(steps_away * 30).expect("in range");
            let code = generator.code_at(then);
            assert_eq!(
                verify(&rfc_secret(), &code, at(now), None),
                Ok(then / PERIOD_SECONDS),
                "{steps_away} steps away"
            );
        }
    }

    #[test]
    fn verify_refuses_a_used_step_and_older_ones() {
        let used_step = 1111111111 / PERIOD_SECONDS;
        // The same code again, even a second later in the same step.
        assert_eq!(
            verify(&rfc_secret(), "050471", at(1111111112), Some(used_step)),
            Err(TotpError::AlreadyUsed)
        );
        // The previous step's code, still inside the window, after a newer one was used.
        assert_eq!(
            verify(&rfc_secret(), "081804", at(1111111111), Some(used_step)),
            Err(TotpError::AlreadyUsed)
        );
    }

    #[test]
    fn verify_accepts_a_newer_step_after_one_was_used() {
        let used_step = 1111111109 / PERIOD_SECONDS;
        assert_eq!(
            verify(&rfc_secret(), "050471", at(1111111111), Some(used_step)),
            Ok(used_step + 1)
        );
    }

    #[test]
    fn verify_refuses_a_wrong_code_as_invalid() {
        let right = CodeGenerator::for_product(&rfc_secret()).code_at(1111111111);
        let wrong = if right == "000000" {
            "000001"
        } else {
            "000000"
        };
        assert_eq!(
            verify(&rfc_secret(), wrong, at(1111111111), None),
            Err(TotpError::Invalid)
        );
        // Another user's secret does not accept this user's code.
        let other = TotpSecret(*b"09876543210987654321");
        assert_eq!(
            verify(&other, "050471", at(1111111111), None),
            Err(TotpError::Invalid)
        );
    }

    #[test]
    fn verify_refuses_malformed_codes() {
        for malformed in [
            "", "     ", "05047", "0504711", "05o471", "+50471", "-50471", "05047１", "050-471",
            "14050471",
        ] {
            assert_eq!(
                verify(&rfc_secret(), malformed, at(1111111111), None),
                Err(TotpError::Malformed),
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn verify_ignores_spaces_in_the_code() {
        for spaced in [" 050471", "050471 ", "050 471", " 050\t471\n"] {
            assert_eq!(
                verify(&rfc_secret(), spaced, at(1111111111), None),
                Ok(1111111111 / PERIOD_SECONDS),
                "{spaced:?}"
            );
        }
    }

    #[test]
    fn verify_refuses_any_code_before_1970() {
        let before_epoch = DateTime::from_timestamp(-1, 0).expect("in range");
        assert_eq!(
            verify(&rfc_secret(), "755224", before_epoch, None),
            Err(TotpError::Invalid)
        );
    }

    #[test]
    fn product_profile_is_rfc_compliant() {
        // What `CodeGenerator::new` skips checking, checked once here.
        let built = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS)
            .with_secret(rfc_secret().0.as_slice())
            .with_step_duration(PERIOD_SECONDS)
            .build();
        assert!(built.is_ok(), "{built:?}");
    }

    #[test]
    fn generated_secrets_are_20_random_bytes_in_unpadded_base32() {
        let first = TotpSecret::generate().expect("randomness");
        let second = TotpSecret::generate().expect("randomness");
        assert_ne!(first, second);
        let encoded = first.to_base32();
        assert_eq!(encoded.len(), 32);
        assert!(!encoded.contains('='));
        assert_eq!(TotpSecret::from_base32(&encoded), Ok(first));
        assert_eq!(rfc_secret().to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn secret_parse_accepts_only_the_stored_form() {
        for bad in [
            "",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQA",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====",
            "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1",
            " GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
        ] {
            assert_eq!(
                TotpSecret::from_base32(bad),
                Err(InvalidTotpSecret),
                "{bad:?}"
            );
        }
        assert_eq!(
            TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            Ok(rfc_secret())
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = rfc_secret();
        let printed = format!("{secret:?} {:?}", Some(&secret));
        assert!(printed.contains("redacted"), "{printed}");
        assert!(!printed.contains("GEZDGNBV"), "{printed}");
        assert!(!printed.contains("12345"), "{printed}");
        assert!(!printed.contains("49, 50"), "{printed}");
    }

    #[test]
    fn secret_serializes_as_base32_and_back() {
        let json = serde_json::to_string(&rfc_secret()).expect("serialize");
        assert_eq!(json, r#""GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ""#);
        let back: TotpSecret = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, rfc_secret());
        assert!(serde_json::from_str::<TotpSecret>(r#""GEZDGNBV""#).is_err());
        assert!(serde_json::from_str::<TotpSecret>("42").is_err());
    }

    fn anna() -> Email {
        Email::parse("anna+2fa@nordlysfleet.se").expect("valid email")
    }

    #[test]
    fn otpauth_uri_escapes_the_label_and_names_every_parameter() {
        assert_eq!(
            otpauth_uri(&rfc_secret(), &anna()),
            "otpauth://totp/Leasedesk:anna%2B2fa%40nordlysfleet.se\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Leasedesk\
             &algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn otpauth_uri_round_trips_through_the_totp_rs_parser() {
        let secret = TotpSecret::generate().expect("randomness");
        let parsed = Totp::from_url(otpauth_uri(&secret, &anna())).expect("parses");
        assert_eq!(parsed.account_name(), "anna+2fa@nordlysfleet.se");
        assert_eq!(parsed.issuer(), Some(ISSUER));
        assert_eq!(parsed.secret().as_bytes(), secret.0.as_slice());
        assert_eq!(parsed.algorithm(), Algorithm::SHA1);
        assert_eq!(parsed.digits(), DIGITS);
        assert_eq!(parsed.step(), PERIOD_SECONDS);
        // An app that scanned it makes codes we accept.
        let code = parsed.generate(1_700_000_000).to_string();
        assert_eq!(
            verify(&secret, &code, at(1_700_000_000), None),
            Ok(1_700_000_000 / PERIOD_SECONDS)
        );
    }

    #[test]
    fn enrolment_draws_the_uri_as_an_svg_qr_code() {
        let enrolment = TotpEnrolment::new(&rfc_secret(), &anna()).expect("fits");
        assert_eq!(enrolment.otpauth_uri, otpauth_uri(&rfc_secret(), &anna()));
        let svg = &enrolment.qr_code_svg;
        assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("<path") && svg.contains(r#"d="M"#), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");

        let base64 = enrolment
            .qr_code_data_uri
            .strip_prefix("data:image/svg+xml;base64,")
            .expect("data URI prefix");
        let decoded = BASE64.decode(base64).expect("base64");
        assert_eq!(decoded, svg.as_bytes());
    }

    #[test]
    fn enrolment_debug_does_not_print_the_secret() {
        let enrolment = TotpEnrolment::new(&rfc_secret(), &anna()).expect("fits");
        let printed = format!("{enrolment:?}");
        assert!(!printed.contains("GEZDGNBV"), "{printed}");
        assert!(!printed.contains("otpauth"), "{printed}");
    }

    fn is_formatted_recovery_code(code: &str) -> bool {
        let groups: Vec<&str> = code.split('-').collect();
        groups.len() == 3
            && groups.iter().all(|group| {
                group.len() == 4 && group.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))
            })
    }

    #[test]
    fn recovery_codes_are_ten_distinct_readable_codes_with_their_hashes() {
        let (codes, hashes) = RecoveryCodes::generate().expect("randomness");
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        assert_eq!(hashes.len(), RECOVERY_CODE_COUNT);
        for code in &codes {
            assert!(is_formatted_recovery_code(code), "{code}");
        }
        let mut distinct = codes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), RECOVERY_CODE_COUNT);
        let (again, _) = RecoveryCodes::generate().expect("randomness");
        assert!(codes.iter().all(|code| !again.contains(code)));
    }

    #[test]
    fn recovery_codes_carry_60_random_bits() {
        let show = |bits| display_recovery_code(&recovery_code_from_bits(bits));
        assert_eq!(show(0), "0000-0000-0000");
        assert_eq!(show(1), "0000-0000-0001");
        assert_eq!(show(1 << 59), "g000-0000-0000");
        assert_eq!(show((1 << 60) - 1), "zzzz-zzzz-zzzz");
        // Bits above the sixtieth are not used.
        assert_eq!(show(u64::MAX), "zzzz-zzzz-zzzz");
        assert_eq!(show(0x0123_4567_89ab_cdef), "28t5-cy4t-qkff");
    }

    #[test]
    fn each_recovery_code_redeems_its_own_hash_once_removed() {
        let (codes, mut hashes) = RecoveryCodes::generate().expect("randomness");
        for (index, code) in codes.iter().enumerate() {
            assert_eq!(RecoveryCodes::redeem(code, &hashes), Some(index), "{code}");
        }
        // The caller deletes a redeemed hash; the code then no longer works.
        hashes.remove(3);
        assert_eq!(RecoveryCodes::redeem(&codes[3], &hashes), None);
        assert_eq!(RecoveryCodes::redeem(&codes[4], &hashes), Some(3));
    }

    #[test]
    fn recovery_code_input_ignores_case_spaces_dashes_and_lookalikes() {
        let code = *b"01ab0cd1efgh";
        let hashes = [
            RecoveryCodeHash::of(b"zzzzzzzzzzzz", [7; RECOVERY_SALT_BYTES]),
            RecoveryCodeHash::of(&code, [9; RECOVERY_SALT_BYTES]),
        ];
        for typed in [
            "01ab-0cd1-efgh",
            "01AB-0CD1-EFGH",
            "01ab0cd1efgh",
            " 01ab 0cd1 efgh ",
            "OLAB-ocdI-efgh",
            "0-1-a-b-0-c-d-1-e-f-g-h",
        ] {
            assert_eq!(RecoveryCodes::redeem(typed, &hashes), Some(1), "{typed:?}");
        }
    }

    #[test]
    fn recovery_code_redeem_refuses_unknown_and_malformed_input() {
        let (codes, hashes) = RecoveryCodes::generate().expect("randomness");
        assert_eq!(RecoveryCodes::redeem(&codes[0], &[]), None);
        let (others, _) = RecoveryCodes::generate().expect("randomness");
        assert_eq!(RecoveryCodes::redeem(&others[0], &hashes), None);
        let too_long = format!("{}0", codes[0]);
        let too_short = &codes[0][..codes[0].len() - 1];
        let with_u = format!("u{}", &codes[0][1..]);
        for malformed in ["", "----", too_short, &too_long, &with_u, "01ab-0cd1-efgé"] {
            assert_eq!(
                RecoveryCodes::redeem(malformed, &hashes),
                None,
                "{malformed:?}"
            );
        }
    }

    #[test]
    fn recovery_code_hashes_serialize_as_base64_and_back() {
        let hash = RecoveryCodeHash::of(b"01ab0cd1efgh", [5; RECOVERY_SALT_BYTES]);
        let json = serde_json::to_string(&hash).expect("serialize");
        let encoded: String = serde_json::from_str(&json).expect("a JSON string");
        assert_eq!(encoded.len(), 64);
        assert_eq!(
            BASE64.decode(&encoded).expect("base64")[..RECOVERY_SALT_BYTES],
            [5; RECOVERY_SALT_BYTES]
        );
        let back: RecoveryCodeHash = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, hash);
        assert_eq!(RecoveryCodes::redeem("01ab-0cd1-efgh", &[back]), Some(0));

        let short = BASE64.encode([0; 47]);
        let long = BASE64.encode([0; 49]);
        for bad in ["", "not base64!", short.as_str(), long.as_str()] {
            assert_eq!(
                RecoveryCodeHash::from_base64(bad),
                Err(InvalidRecoveryCodeHash),
                "{bad:?}"
            );
        }
        assert!(serde_json::from_str::<RecoveryCodeHash>(r#""AAAA""#).is_err());
    }
}
