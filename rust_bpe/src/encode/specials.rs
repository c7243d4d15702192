//! The special tokens read and banned for an (allowed, disallowed) choice, with their
//! matchers kept for the few choices asked for.

use super::*;

/// The special tokens an (allowed, disallowed) pair reads, their ids, and a matcher of
/// those it bans.
pub(super) struct ChosenSpecials {
    pub(super) specials: SpecialTokens,
    pub(super) ids: Vec<u32>,
    pub(super) banned: Option<AhoCorasick>,
}

/// The start of a range that stands for a special token.
pub(super) const SPECIAL: usize = usize::MAX;

impl Encoder {
    /// The special tokens read as such, with their ids; an error if the text holds a
    /// disallowed one (tiktoken's check: any occurrence of any disallowed special).
    pub(super) fn prepare_specials(&self, text: &str, allowed: &Allowed, disallowed: &Allowed) -> Result<Arc<ChosenSpecials>, BpeError> {
        let chosen = self.choose_specials(allowed, disallowed)?;
        check_banned(text.as_bytes(), chosen.banned.as_ref())?;
        Ok(chosen)
    }

    /// The special tokens read as such, with their ids, and a matcher of the disallowed ones
    /// (made once for each (allowed, disallowed), up to `CHOSEN_SPECIALS_KEPT` of them).
    pub(super) fn choose_specials(&self, allowed: &Allowed, disallowed: &Allowed) -> Result<Arc<ChosenSpecials>, BpeError> {
        let mut kept = self.chosen_specials.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, chosen)) = kept.iter().find(|(a, d, _)| a == allowed && d == disallowed) {
            return Ok(chosen.clone());
        }
        let chosen = Arc::new(self.make_specials(allowed, disallowed)?);
        if kept.len() < CHOSEN_SPECIALS_KEPT {
            kept.push((allowed.clone(), disallowed.clone(), chosen.clone()));
        }
        Ok(chosen)
    }

    pub(super) fn make_specials(&self, allowed: &Allowed, disallowed: &Allowed) -> Result<ChosenSpecials, BpeError> {
        let all = self.tokenizer.special_tokens();
        let is_allowed = |name: &str| match allowed {
            Allowed::None => false,
            Allowed::All => true,
            Allowed::Some(list) => list.iter().any(|s| s == name),
        };
        if let Allowed::Some(list) = allowed {
            if let Some(unknown) = list.iter().find(|s| !all.iter().any(|(n, _)| n == *s)) {
                return Err(BpeError::InvalidSpecialToken(format!("{unknown:?} is not a special token of this tokenizer")));
            }
        }
        let banned: Vec<&str> = all
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| match disallowed {
                Allowed::None => false,
                Allowed::All => !is_allowed(n),
                Allowed::Some(list) => list.iter().any(|s| s == n),
            })
            .collect();
        let banned = (!banned.is_empty()).then(|| {
            AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::DFA))
                .match_kind(MatchKind::LeftmostFirst)
                .build(&banned)
                .expect("special-token matcher")
        });
        let (names, ids): (Vec<String>, Vec<u32>) = all.iter().filter(|(n, _)| is_allowed(n)).cloned().unzip();
        Ok(ChosenSpecials { specials: SpecialTokens::new(&names)?, ids, banned })
    }
}

/// An error if `text` holds a special token that `banned` matches.
pub(super) fn check_banned(text: &[u8], banned: Option<&AhoCorasick>) -> Result<(), BpeError> {
    match banned.and_then(|b| b.find(text)) {
        Some(m) => Err(BpeError::DisallowedSpecial(String::from_utf8_lossy(&text[m.start()..m.end()]).into_owned())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::testing::*;

    #[test]
    fn each_choice_of_special_tokens_is_kept_apart() {
        let enc = trained();
        let text = "the fox<|endoftext|>the dog";
        let eot = enc.tokenizer().special_tokens()[0].1;
        let named = Allowed::Some(vec!["<|endoftext|>".into()]);
        // Twice round, so that the second round is answered from the kept choices.
        for _ in 0..2 {
            assert!(enc.encode(text, &Allowed::All, &Allowed::All, None).unwrap().contains(&eot));
            assert!(enc.encode(text, &named, &Allowed::All, None).unwrap().contains(&eot));
            assert!(matches!(enc.encode(text, &Allowed::None, &Allowed::All, None), Err(BpeError::DisallowedSpecial(_))));
            assert!(!enc.encode(text, &Allowed::None, &Allowed::None, None).unwrap().contains(&eot));
            let unknown = Allowed::Some(vec!["<|nope|>".into()]);
            assert!(matches!(enc.encode(text, &unknown, &Allowed::None, None), Err(BpeError::InvalidSpecialToken(_))));
        }
    }
}
