using System.Globalization;
using System.Net;
using System.Text;

namespace LSVCR.LoadTests;

/// <summary>txt, md, csv and html reports in a report folder (NBomber's report formats).</summary>
public static class Reports
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private static readonly double[] Percentiles = [50, 75, 95, 99, 99.9];

    public static void Write(string folder, string title, IReadOnlyList<ScenarioStats> all)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "report.md"), Markdown(title, all));
        File.WriteAllText(Path.Combine(folder, "report.txt"), Text(title, all));
        File.WriteAllText(Path.Combine(folder, "report.csv"), Csv(all));
        File.WriteAllText(Path.Combine(folder, "report.html"), Html(title, all));
    }

    private static string F(double v) => double.IsNaN(v) ? "–" : v.ToString(v >= 100 ? "F0" : "F2", Inv);

    private static IEnumerable<string[]> Rows(ScenarioStats s)
    {
        yield return ["duration s", F(s.Duration.TotalSeconds)];
        yield return ["requests", s.Requests.ToString(Inv)];
        yield return ["ok / fail", $"{s.OkCount} / {s.FailCount} ({F(s.FailPercent)} % fail)"];
        yield return ["RPS (ok)", F(s.Rps)];
        yield return ["latency ms (ok, from intended start) mean", F(s.Metric("mean"))];
        foreach (var p in Percentiles) yield return [$"p{p.ToString(Inv)} ms", F(s.Percentile(p))];
        yield return ["max ms", F(s.Metric("max"))];
        yield return ["status codes", string.Join(", ", s.StatusCodes.Select(kv => $"{(kv.Key == 0 ? "none" : kv.Key.ToString(Inv))}: {kv.Value}"))];
        if (s.Errors.Count > 0) yield return ["errors", string.Join(", ", s.Errors.Select(kv => $"{kv.Key}: {kv.Value}"))];
        foreach (var n in s.Notes) yield return ["note", n];
        foreach (var (t, passed, actual) in s.Checked) yield return [$"threshold `{t.Text}`", $"{(passed ? "PASS" : "FAIL")} (actual {F(actual)})"];
    }

    private static string Markdown(string title, IReadOnlyList<ScenarioStats> all)
    {
        var sb = new StringBuilder($"# {title}\n\n");
        foreach (var s in all)
        {
            sb.Append($"## {s.Name}\n\n| metric | value |\n|---|---|\n");
            foreach (var r in Rows(s)) sb.Append($"| {r[0]} | {r[1]} |\n");
            sb.Append('\n');
        }
        return sb.ToString();
    }

    private static string Text(string title, IReadOnlyList<ScenarioStats> all)
    {
        var sb = new StringBuilder($"{title}\n{new string('=', title.Length)}\n");
        foreach (var s in all)
        {
            sb.Append($"\n{s.Name}\n");
            foreach (var r in Rows(s)) sb.Append($"  {r[0].Replace("`", ""),-44} {r[1]}\n");
        }
        return sb.ToString();
    }

    private static string Csv(IReadOnlyList<ScenarioStats> all)
    {
        var sb = new StringBuilder("scenario,duration_s,requests,ok,fail,fail_pct,rps,mean_ms,p50_ms,p75_ms,p95_ms,p99_ms,p99.9_ms,max_ms,2xx,4xx,429,5xx,thresholds_passed\n");
        foreach (var s in all)
            sb.Append(string.Join(",", [
                $"\"{s.Name}\"", F(s.Duration.TotalSeconds), s.Requests.ToString(Inv), s.OkCount.ToString(Inv), s.FailCount.ToString(Inv), F(s.FailPercent), F(s.Rps),
                F(s.Metric("mean")), .. Percentiles.Select(p => F(s.Percentile(p))), F(s.Metric("max")),
                s.ClassCount(2).ToString(Inv), s.ClassCount(4).ToString(Inv), s.StatusCodes.GetValueOrDefault(429).ToString(Inv), s.ClassCount(5).ToString(Inv),
                s.Checked.All(c => c.Passed) ? "true" : "false"])).Append('\n');
        return sb.ToString();
    }

    private static string Html(string title, IReadOnlyList<ScenarioStats> all)
    {
        var sb = new StringBuilder($"<!doctype html><html><head><meta charset=\"utf-8\"><title>{WebUtility.HtmlEncode(title)}</title>" +
            "<style>body{font-family:sans-serif}table{border-collapse:collapse;margin-bottom:2em}td{border:1px solid #ccc;padding:4px 8px}" +
            ".PASS{color:green}.FAIL{color:#b00}</style></head><body>");
        sb.Append($"<h1>{WebUtility.HtmlEncode(title)}</h1>");
        foreach (var s in all)
        {
            sb.Append($"<h2>{WebUtility.HtmlEncode(s.Name)}</h2><table>");
            foreach (var r in Rows(s))
            {
                var cls = r[1].StartsWith("PASS") ? "PASS" : r[1].StartsWith("FAIL") ? "FAIL" : "";
                sb.Append($"<tr><td>{WebUtility.HtmlEncode(r[0].Replace("`", ""))}</td><td class=\"{cls}\">{WebUtility.HtmlEncode(r[1])}</td></tr>");
            }
            sb.Append("</table>");
        }
        return sb.Append("</body></html>").ToString();
    }
}
