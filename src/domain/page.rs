//! Paging: `limit`, `order`, the `after` cursor, and a page of results.

use super::ids::echo;
use super::DomainError;

/// Page size: 1..=100, default 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit(u32);

impl Limit {
    pub const DEFAULT: Limit = Limit(20);

    pub fn parse(raw: &str) -> Result<Limit, DomainError> {
        match raw.trim().parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => Ok(Limit(n)),
            _ => Err(DomainError::invalid(
                "limit",
                format!(
                    "Invalid 'limit': expected an integer between 1 and 100, got '{}'.",
                    echo(raw)
                ),
            )),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    Asc,
    Desc,
}

impl Order {
    pub fn parse(raw: &str) -> Result<Order, DomainError> {
        match raw {
            "asc" => Ok(Order::Asc),
            "desc" => Ok(Order::Desc),
            _ => Err(DomainError::invalid(
                "order",
                format!(
                    "Invalid 'order': expected 'asc' or 'desc', got '{}'.",
                    echo(raw)
                ),
            )),
        }
    }
}

/// One page request: ordered by `created_at`, ties broken by the per-organization sequence.
/// `after` is kept as given: whether it names an object of this list is the store's question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub limit: Limit,
    pub after: Option<String>,
    pub order: Order,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: Limit::DEFAULT,
            after: None,
            order: Order::Desc,
        }
    }
}

/// A page of results; `has_more` is exact.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

/// The refusal for an `after` (or `before`) that is not an id this list handed out.
pub fn unknown_cursor(param: &'static str, raw: &str) -> DomainError {
    DomainError::invalid(
        param,
        format!(
            "Invalid '{param}': '{}' is not an id returned by this list.",
            echo(raw)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bounds() {
        assert_eq!(Limit::parse("1").unwrap().get(), 1);
        assert_eq!(Limit::parse("100").unwrap().get(), 100);
        assert!(Limit::parse("0").is_err());
        assert!(Limit::parse("101").is_err());
        assert!(Limit::parse("-1").is_err());
        assert!(Limit::parse("ten").is_err());
        assert!(Limit::parse("99999999999999999999999").is_err());
    }
}
