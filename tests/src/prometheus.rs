//! Reading a Prometheus text exposition, as a scraper would.

/// The sum of every series of `name` whose labels include all of `labels`
/// (0 when there is none).
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(k, v)| {
                    series_labels
                        .split(',')
                        .any(|pair| pair == format!("{k}=\"{v}\""))
                });
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Whether a series of `name` with all of `labels` is exposed at all.
pub fn exposed(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .any(|line| {
            let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            series_name == name
                && labels.iter().all(|(k, v)| {
                    series_labels
                        .trim_end_matches('}')
                        .split(',')
                        .any(|pair| pair == format!("{k}=\"{v}\""))
                })
        })
}
