use sansa_sim::Scenario;

#[test]
fn quiet() {
    let r = Scenario::quiet(1).run_with_trace(40);
    match r {
        Ok(r) => eprintln!("{r:?}"),
        Err(f) => panic!("{f}"),
    }
}

#[test]
fn swarm_few() {
    let t = std::time::Instant::now();
    for seed in 0..20 {
        match Scenario::swarm(seed).run() {
            Ok(r) => eprintln!("{r:?}"),
            Err(_) => panic!(
                "{}",
                Scenario::swarm(seed)
                    .run_with_trace(60)
                    .err()
                    .map(|f| f.to_string())
                    .unwrap_or_default()
            ),
        }
    }
    eprintln!("{:?}", t.elapsed());
}
