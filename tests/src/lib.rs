
pub mod wit_check;
