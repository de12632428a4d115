//! randomPassword: characters from digits, lower- and upper-case letters and
//! special symbols with per-set minimums, drawn from the OS random source.

use super::{FnError, Params};
use crate::error::ValidationError;

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";
const SPECIAL: &str = "~!@#$%^&*()_+";

#[derive(Debug)]
pub(crate) struct Password {
    length: usize,
    /// (character set, minimum count) for lower, upper, digits, special.
    sets: [(Vec<char>, usize); 4],
}

impl Password {
    pub(crate) fn parse(p: &mut Params) -> Result<Password, ValidationError> {
        let count = |p: &mut Params, key: &'static str| -> Result<usize, ValidationError> {
            let n = p.required_int(key)?;
            usize::try_from(n)
                .ok()
                .filter(|n| *n <= 4096)
                .ok_or_else(|| p.loc(key).err("must be between 0 and 4096"))
        };
        let length = count(p, "passwordLength")?;
        let lower = count(p, "minimumNumberOfLowercaseLetters")?;
        let upper = count(p, "minimumNumberOfUppercaseLetters")?;
        let digits = count(p, "minimumNumberOfDigits")?;
        let special = count(p, "minimumNumberOfSpecialSymbols")?;
        let custom = p.string("specialSymbols")?;
        if let Some(c) = &custom {
            if c.is_empty() {
                return Err(p.loc("specialSymbols").err("must not be empty"));
            }
            if special == 0 {
                return Err(p
                    .loc("minimumNumberOfSpecialSymbols")
                    .err("cannot be 0 when specialSymbols is given"));
            }
        }
        if lower + upper + digits + special > length {
            return Err(p.loc("passwordLength").err(format!(
                "the minimum counts add up to {} which exceeds passwordLength {length}",
                lower + upper + digits + special
            )));
        }
        if length > 0 && lower + upper + digits + special == 0 {
            return Err(p
                .loc("passwordLength")
                .err("every minimum is 0, so no character set may be used"));
        }
        Ok(Password {
            length,
            sets: [
                (LOWER.chars().collect(), lower),
                (UPPER.chars().collect(), upper),
                (DIGITS.chars().collect(), digits),
                (custom.as_deref().unwrap_or(SPECIAL).chars().collect(), special),
            ],
        })
    }

    pub(crate) fn generate(&self) -> Result<String, FnError> {
        let mut rng = Rng::default();
        let mut out = Vec::with_capacity(self.length);
        for (set, min) in &self.sets {
            for _ in 0..*min {
                out.push(set[rng.below(set.len())?]);
            }
        }
        // The rest comes from the union of the sets that were asked for (a
        // minimum of 0 means "none from this set").
        let pool: Vec<char> = self
            .sets
            .iter()
            .filter(|(_, min)| *min > 0)
            .flat_map(|(set, _)| set.iter().copied())
            .collect();
        while out.len() < self.length {
            out.push(pool[rng.below(pool.len())?]);
        }
        for i in (1..out.len()).rev() {
            let j = rng.below(i + 1)?;
            out.swap(i, j);
        }
        Ok(out.into_iter().collect())
    }
}

/// Buffered OS randomness with unbiased bounded draws.
#[derive(Default)]
struct Rng {
    buf: Vec<u8>,
}

impl Rng {
    fn next_u32(&mut self) -> Result<u32, FnError> {
        if self.buf.len() < 4 {
            self.buf.resize(256, 0);
            getrandom::fill(&mut self.buf)
                .map_err(|e| FnError(format!("randomPassword: no randomness available: {e}")))?;
        }
        let tail = self.buf.len() - 4;
        let bytes = [
            self.buf[tail],
            self.buf[tail + 1],
            self.buf[tail + 2],
            self.buf[tail + 3],
        ];
        self.buf.truncate(tail);
        Ok(u32::from_le_bytes(bytes))
    }

    fn below(&mut self, n: usize) -> Result<usize, FnError> {
        let n = n as u32;
        if n == 0 {
            return Err(FnError("randomPassword: empty character set".into()));
        }
        let zone = u32::MAX - (u32::MAX % n);
        loop {
            let x = self.next_u32()?;
            if x < zone {
                return Ok((x % n) as usize);
            }
        }
    }
}
