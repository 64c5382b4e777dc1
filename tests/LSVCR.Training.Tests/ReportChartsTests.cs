using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace LSVCR.Training.Tests;

/// <summary>The report pictures: real SVG files, named after what they show, byte-identical when rendered again.</summary>
public class ReportChartsTests
{
    private static EvalResult Result(string task, string protocol, double ndcg10) => new()
    {
        Task = task, Split = "test", Protocol = protocol, Examples = 50,
        Metrics = new Dictionary<string, double> { ["ndcg@5"] = ndcg10 - 0.05, ["ndcg@10"] = ndcg10 },
    };

    private static ExperimentReport Report() => new()
    {
        Training = new TrainOptions(), Evaluation = new EvalOptions(), Dataset = new Dictionary<string, int> { ["videos"] = 10 },
        Rows =
        [
            new ExperimentRow { Task = "rec", Variant = "full", Protocol = "sampled", Result = Result("rec", "sampled", 0.42), BestEpoch = 2, EpochsRun = 3 },
            new ExperimentRow { Task = "rec", Variant = "id-only", Protocol = "sampled", Result = Result("rec", "sampled", 0.31), BestEpoch = 3, EpochsRun = 3 },
            new ExperimentRow { Task = "rec", Variant = "popularity", Protocol = "sampled", Result = Result("rec", "sampled", 0.17) },
        ],
    };

    private static RunHistory History(double start) => new()
    {
        Settings = new TrainOptions(),
        Epochs = Enumerable.Range(1, 3).Select(e => new EpochRecord
        {
            Epoch = e, Loss = start / e, Validation = new Dictionary<string, double> { ["ndcg@5"] = 0.1 * e },
        }).ToList(),
    };

    private static IReadOnlyList<ReportChart> Render() =>
        ReportCharts.ForExperiment(Report(), (task, variant) => task == "rec" && variant == "full" ? History(3.0) : variant == "id-only" ? History(2.5) : null);

    [Fact]
    public void Renders_curves_and_bars_as_valid_deterministic_svg_files()
    {
        var charts = Render();
        Assert.Equal(["curves-rec.svg", "ndcg-10-rec-sampled.svg"], charts.Select(c => c.FileName));

        using var dir = new TestDir();
        var markdown = Report().ToMarkdown() + ReportCharts.Markdown(charts);
        ReportCharts.WriteFiles(dir.Path, charts, ReportCharts.Html("test report", markdown));
        foreach (var chart in charts)
        {
            var path = Path.Combine(dir.Path, chart.FileName);
            Assert.True(File.Exists(path), path);
            var svg = XDocument.Parse(File.ReadAllText(path));
            Assert.Equal("svg", svg.Root!.Name.LocalName);
            Assert.True(new FileInfo(path).Length > 1000, $"{path}: {new FileInfo(path).Length} bytes");
        }
        string Text(string file) => string.Concat(XDocument.Load(Path.Combine(dir.Path, file)).Descendants().Where(e => e.Name.LocalName == "text").Select(e => e.Value + "\n"));
        var curves = Text("curves-rec.svg");
        foreach (var series in new[] { "full loss", "full val ndcg@5", "id-only loss", "id-only val ndcg@5", "epoch" })
            Assert.Contains(series, curves);
        var bars = Text("ndcg-10-rec-sampled.svg");
        foreach (var label in new[] { "full", "id-only", "popularity", "0.4200", "0.1700" })
            Assert.Contains(label, bars);
        Assert.DoesNotContain("0.3100", curves);

        // The same inputs give the same bytes, so a rerun leaves the files (and their write times) alone.
        var before = charts.Select(c => File.GetLastWriteTimeUtc(Path.Combine(dir.Path, c.FileName))).ToList();
        var again = Render();
        Assert.Equal(charts.Select(c => Convert.ToHexString(c.Svg)), again.Select(c => Convert.ToHexString(c.Svg)));
        Thread.Sleep(20);
        ReportCharts.WriteFiles(dir.Path, again, ReportCharts.Html("test report", markdown));
        Assert.Equal(before, charts.Select(c => File.GetLastWriteTimeUtc(Path.Combine(dir.Path, c.FileName))));

        // report.md's links and report.html's images point at the files; the html keeps the table.
        Assert.Equal(charts.Select(c => c.FileName), Regex.Matches(markdown, @"!\[[^\]]*\]\(([^)]+)\)").Select(m => m.Groups[1].Value));
        var html = File.ReadAllText(Path.Combine(dir.Path, ReportCharts.HtmlFile), Encoding.UTF8);
        foreach (var chart in charts) Assert.Contains($"src=\"{chart.FileName}\"", html);
        Assert.Contains("<td>id-only</td>", html);
    }
}
