//! Object layout: `<table>/date=YYYY-MM-DD/hour=HH/host=NAME/part-<start>-<seq>.parquet`.
//!
//! Hive partitions let the query engine prune by time and host; retention deletes whole
//! partitions. Everything here is pure so both the writer and the reader agree by construction.

/// Civil date (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
///
/// Howard Hinnant's `civil_from_days`, exact for every i64 day that fits.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date (inverse of [`civil_from_days`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const NANOS_PER_HOUR: i64 = 3_600 * 1_000_000_000;

/// The hour bucket (hours since the epoch) of a UTC nanosecond timestamp.
pub fn hour_bucket(time_unix_nano: i64) -> i64 {
    time_unix_nano.div_euclid(NANOS_PER_HOUR)
}

/// Start of an hour bucket in UTC nanoseconds.
pub fn hour_bucket_start_ns(bucket: i64) -> i64 {
    bucket * NANOS_PER_HOUR
}

/// Host names become path segments: keep `[A-Za-z0-9._-]`, replace the rest.
pub fn sanitize_host(host: &str) -> String {
    let s: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unknown".into()
    } else {
        s
    }
}

/// The partition directory (no leading or trailing slash) of `table` for an hour and host.
pub fn partition_dir(table: &str, bucket: i64, host: &str) -> String {
    let (y, m, d) = civil_from_days(bucket.div_euclid(24));
    let h = bucket.rem_euclid(24);
    format!(
        "{table}/date={y:04}-{m:02}-{d:02}/hour={h:02}/host={}",
        sanitize_host(host)
    )
}

/// Object name of one file written by a collector.
///
/// `start` (first event time) keeps names ordered by time; `run` and `seq` make them unique per
/// collector run and flush, so two collectors or two runs never overwrite each other.
pub fn part_file_name(start_unix_nano: i64, run: &str, seq: u64) -> String {
    format!("part-{start_unix_nano:019}-{run}-{seq:06}.parquet")
}

/// The hour bucket of an object path written with [`partition_dir`], if it has one.
pub fn bucket_of_path(path: &str) -> Option<i64> {
    let mut date = None;
    let mut hour = None;
    for seg in path.split('/') {
        if let Some(v) = seg.strip_prefix("date=") {
            let mut it = v.splitn(3, '-');
            let y = it.next()?.parse::<i64>().ok()?;
            let m = it.next()?.parse::<u32>().ok()?;
            let d = it.next()?.parse::<u32>().ok()?;
            if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
                return None;
            }
            date = Some(days_from_civil(y, m, d));
        } else if let Some(v) = seg.strip_prefix("hour=") {
            hour = v.parse::<i64>().ok().filter(|h| (0..24).contains(h));
        }
    }
    Some(date? * 24 + hour?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        for days in [
            -1_000_000, -1, 0, 1, 59, 60, 365, 10_957, 19_723, 20_784, 2_000_000,
        ] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn partition_paths_round_trip() {
        // 2026-11-27T14:05:00Z
        let t = 1_795_788_300_000_000_000_i64;
        let b = hour_bucket(t);
        let dir = partition_dir("kernel_events", b, "web-1.example");
        assert_eq!(
            dir,
            "kernel_events/date=2026-11-27/hour=14/host=web-1.example"
        );
        let path = format!("{dir}/{}", part_file_name(t, "r1", 3));
        assert_eq!(bucket_of_path(&path), Some(b));
        assert!(hour_bucket_start_ns(b) <= t && t < hour_bucket_start_ns(b + 1));
    }

    #[test]
    fn hostile_host_names_stay_one_segment() {
        assert_eq!(sanitize_host("a/../b=c"), "a_.._b_c");
        assert_eq!(sanitize_host(""), "unknown");
        assert_eq!(
            bucket_of_path("kernel_events/date=2026-13-01/hour=01/x"),
            None
        );
        assert_eq!(bucket_of_path("kernel_events/other/file"), None);
    }
}
