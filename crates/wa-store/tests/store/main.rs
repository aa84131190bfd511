//! wa-store integration tests: the conformance suite on every backend, schema-version refusal,
//! and the crash test. One test binary keeps link time down.

mod batch;
mod conformance;
mod crash;
mod harness;
mod migrations;
mod tls;

mod memory {
    crate::conformance_suite!(crate::harness::memory);
    crate::batch_suite!(crate::harness::memory);
}

mod sqlite {
    crate::conformance_suite!(crate::harness::sqlite);
    crate::batch_suite!(crate::harness::sqlite);
}

mod postgres {
    crate::conformance_suite!(crate::harness::postgres);
    crate::batch_suite!(crate::harness::postgres);
}

mod mongodb {
    crate::conformance_suite!(crate::harness::mongodb);
    crate::batch_suite!(crate::harness::mongodb);
}
