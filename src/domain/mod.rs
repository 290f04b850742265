//! The payments vocabulary, pure: money, VPAs, bank codes, op ids.
//! Nothing here performs I/O or knows about HTTP, SQL or actors.

pub mod breaker;
pub mod ids;
pub mod money;
pub mod url_allow;

pub use ids::{BankCode, Vpa, is_valid_op_id, mask_name, psp_of};
pub use money::{MAX_WIRE_PAISE, MoneyError, Paise};
