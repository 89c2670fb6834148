//! Parse + validate throughput of bundle manifests: a multi-document YAML stream and a CIB
//! document, each holding many copies of the seed bundle (with a monitor operation and meta
//! attributes, so every part of the schema is exercised).
//!
//! Run: `cargo bench --bench parse`

use berth::model::validate::validate;
use berth::model::{Bundle, NvPair, Operation, cib, manifest};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bundles(n: usize) -> Vec<Bundle> {
    let seed = cib::import(include_str!("../manifests/httpd-bundle.xml"))
        .unwrap()
        .bundles
        .remove(0);
    (0..n)
        .map(|i| {
            let mut b = seed.clone();
            b.metadata.name = format!("web-{i}");
            let p = b.spec.primitive.as_mut().unwrap();
            p.id = format!("web-{i}-apache");
            p.operations.push(Operation {
                name: "monitor".into(),
                interval: "10s".into(),
                timeout: Some("20s".into()),
                ..Default::default()
            });
            b.spec.meta_attributes.push(NvPair {
                id: None,
                name: "migration-threshold".into(),
                value: Some("3".into()),
            });
            b
        })
        .collect()
}

fn parse_and_validate(c: &mut Criterion) {
    let n = 1000;
    let set = bundles(n);
    let yaml = manifest::to_yaml(&set);
    let xml = cib::export_cib(&set);
    let mut g = c.benchmark_group("parse+validate");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("yaml manifests (1000 bundles)", |bench| {
        bench.iter(|| {
            let parsed = manifest::parse(&yaml).unwrap();
            for b in &parsed.bundles {
                validate(b).unwrap();
            }
            parsed.bundles.len()
        })
    });
    g.bench_function("cib xml (1000 bundles)", |bench| {
        bench.iter(|| {
            let parsed = manifest::parse(&xml).unwrap();
            for b in &parsed.bundles {
                validate(b).unwrap();
            }
            parsed.bundles.len()
        })
    });
    g.finish();
}

criterion_group!(benches, parse_and_validate);
criterion_main!(benches);
