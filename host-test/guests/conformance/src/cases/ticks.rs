//! Case `ticks`: period 100 ms; at the 3rd tick the period becomes 250 ms, at the 5th it is
//! set to 0 (off). On virtual time the host must fire exactly at 100, 200, 300, 550, 800 ms.

use crate::abi::{self, OK};
use crate::report::check;

pub fn configure() -> u32 {
    check("set_tick_period_ok", abi::set_tick_period(100), OK);
    1
}

pub fn tick(n: u32) {
    match n {
        3 => {
            check("tick_period_change_ok", abi::set_tick_period(250), OK);
        }
        5 => {
            check("tick_period_off_ok", abi::set_tick_period(0), OK);
        }
        _ => {}
    }
}
