using System.Globalization;
using System.Text;
using Markdig;
using ScottPlot;

namespace LSVCR.Training;

/// <summary>One picture of a report: its file name (beside <c>report.md</c>), alt text and SVG bytes.</summary>
public sealed record ReportChart(string FileName, string Title, byte[] Svg);

/// <summary>
/// The pictures of a report (<c>lsvcr experiment</c>'s and the Evaluation step's): training curves per task (loss and
/// validation ndcg@5 per epoch, one pair of series per variant) and ndcg@10 bars per variant and baseline for each
/// task/protocol; plus <c>report.html</c>, the same tables and pictures. SVG, because it is text, small and
/// deterministic (no timestamps), so rewriting a report only when its bytes change also holds for its pictures.
/// </summary>
public static partial class ReportCharts
{
    public const string BarMetric = "ndcg@10", CurveMetric = "ndcg@5", HtmlFile = "report.html";
    private const int Width = 720, Height = 400;

    /// <summary>Loss (left axis) and validation ndcg@5 (right axis) per epoch of each run of <paramref name="task"/>.</summary>
    public static ReportChart Curves(string task, IReadOnlyList<(string Variant, IReadOnlyList<EpochRecord> Epochs)> runs)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        for (var i = 0; i < runs.Count; i++)
        {
            var (variant, epochs) = runs[i];
            if (epochs.Count == 0) continue;
            double[] xs = epochs.Select(e => (double)e.Epoch).ToArray();
            var color = palette.GetColor(i);
            var loss = plot.Add.Scatter(xs, epochs.Select(e => e.Loss).ToArray(), color);
            loss.LegendText = $"{variant} loss";
            var val = plot.Add.Scatter(xs, epochs.Select(e => e.Validation.TryGetValue(CurveMetric, out var v) ? v : double.NaN).ToArray(), color);
            val.LegendText = $"{variant} val {CurveMetric}";
            val.LinePattern = LinePattern.Dashed;
            val.Axes.YAxis = plot.Axes.Right;
        }
        plot.Title($"{task}: training loss and validation {CurveMetric}");
        plot.XLabel("epoch");
        plot.YLabel("loss");
        plot.Axes.Right.Label.Text = $"validation {CurveMetric}";
        plot.ShowLegend(Edge.Bottom); // below the plot: inside it would cover the curves
        return new ReportChart($"curves-{Slug(task)}.svg", $"{task} training curves", Svg(plot));
    }

    /// <summary>One bar of <see cref="BarMetric"/> per model (variants and baselines) for one task and protocol.</summary>
    public static ReportChart Bars(string task, string protocol, IReadOnlyList<(string Model, double Value)> bars)
    {
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        plot.Add.Bars(bars.Select((b, i) => new Bar
        {
            Position = i, Value = b.Value, FillColor = palette.GetColor(i),
            Label = b.Value.ToString("F4", CultureInfo.InvariantCulture),
        }).ToList());
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            bars.Select((_, i) => (double)i).ToArray(), bars.Select(b => b.Model).ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.Title($"{task} — {protocol}: test {BarMetric}");
        plot.YLabel(BarMetric);
        return new ReportChart($"{Slug(BarMetric)}-{Slug(task)}-{Slug(protocol)}.svg", $"{task} {protocol} {BarMetric}", Svg(plot));
    }

    /// <summary>The image lines appended to <c>report.md</c> (relative links, so the folder can move).</summary>
    public static string Markdown(IEnumerable<ReportChart> charts)
    {
        var md = new StringBuilder("## Charts\n\n");
        foreach (var c in charts) md.Append(CultureInfo.InvariantCulture, $"![{c.Title}]({c.FileName})\n\n");
        return md.ToString();
    }

    /// <summary><c>report.html</c>: the Markdown report (tables and image links) as a standalone page.</summary>
    public static string Html(string title, string markdown)
    {
        var pipeline = new Markdig.MarkdownPipelineBuilder().UsePipeTables().Build();
        return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + System.Net.WebUtility.HtmlEncode(title) + "</title>\n" +
               "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}td{text-align:right}td:first-child{text-align:left}img{max-width:100%}</style>\n" +
               "</head><body>\n" + Markdig.Markdown.ToHtml(markdown, pipeline) + "</body></html>\n";
    }

    /// <summary>Writes the charts and <c>report.html</c> into <paramref name="dir"/>, each only when its bytes changed.</summary>
    public static void WriteFiles(string dir, IEnumerable<ReportChart> charts, string html)
    {
        foreach (var c in charts) WriteIfChanged(Path.Combine(dir, c.FileName), c.Svg);
        WriteIfChanged(Path.Combine(dir, HtmlFile), Encoding.UTF8.GetBytes(html));
    }

    /// <summary>The pictures of an experiment: curves per task from each trained variant's history, bars per task/protocol.</summary>
    public static IReadOnlyList<ReportChart> ForExperiment(ExperimentReport report, Func<string, string, RunHistory?> history)
    {
        var charts = new List<ReportChart>();
        foreach (var task in report.Rows.Select(r => r.Task).Distinct())
        {
            var runs = report.Rows.Where(r => r.Task == task && r.BestEpoch is not null).Select(r => r.Variant).Distinct()
                .Select(v => (v, history(task, v)?.Epochs)).Where(p => p.Epochs is { Count: > 0 })
                .Select(p => (p.v, p.Epochs!)).ToList();
            if (runs.Count > 0) charts.Add(Curves(task, runs));
        }
        foreach (var g in report.Rows.GroupBy(r => (r.Task, r.Protocol)))
        {
            var bars = g.Where(r => r.Result.Metrics.ContainsKey(BarMetric)).Select(r => (r.Variant, r.Result.Metrics[BarMetric])).ToList();
            if (bars.Count > 0) charts.Add(Bars(g.Key.Task, g.Key.Protocol, bars));
        }
        return charts;
    }

    /// <summary>A run's <c>history.json</c>, or null when the run left none.</summary>
    public static RunHistory? ReadHistory(string path) =>
        File.Exists(path) ? System.Text.Json.JsonSerializer.Deserialize<RunHistory>(File.ReadAllBytes(path)) : null;

    private static byte[] Svg(Plot plot) => Encoding.UTF8.GetBytes(StableClipIds(plot.GetSvgXml(Width, Height)));

    /// <summary>Skia numbers clip paths from a process-wide counter (cl_4 in one render, cl_c in the next); numbering
    /// them in document order makes the same chart the same bytes.</summary>
    private static string StableClipIds(string svg)
    {
        var ids = new Dictionary<string, string>(StringComparer.Ordinal);
        return ClipId().Replace(svg, m =>
        {
            if (!ids.TryGetValue(m.Value, out var id)) ids[m.Value] = id = "clip" + ids.Count.ToString(CultureInfo.InvariantCulture);
            return id;
        });
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"\bcl_[0-9a-f]+\b")]
    private static partial System.Text.RegularExpressions.Regex ClipId();

    private static string Slug(string s) => new(s.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '-').ToArray());

    private static void WriteIfChanged(string path, byte[] bytes)
    {
        if (File.Exists(path) && File.ReadAllBytes(path).AsSpan().SequenceEqual(bytes)) return;
        var tmp = path + ".tmp";
        File.WriteAllBytes(tmp, bytes);
        File.Move(tmp, path, overwrite: true);
    }
}
