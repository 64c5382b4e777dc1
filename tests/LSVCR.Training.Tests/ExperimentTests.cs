using LSVCR.Data;
using Xunit.Abstractions;

namespace LSVCR.Training.Tests;

/// <summary>The done-when check of the training issue: on synthetic data LSVCR (full) beats popularity and id-only on both tasks.</summary>
[Collection(TorchCollection.Name)]
public class ExperimentTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Full_beats_popularity_and_id_only_on_both_tasks()
    {
        // Small enough for the ~60 s budget on a busy 2-core machine; far more videos than users' likes can cover, so ids are
        // sparse and the item texts have to carry the topic signal (as with real catalogues). Every liked video gets a
        // comment entry (CommentRate 1): with the default 0.5 the comment histories are too short for CommRank to learn
        // the users' comment styles within this budget and no trained variant beats popularity.
        var data = SyntheticDataset.Generate(new SynthOptions { Users = 300, Videos = 800, Topics = 8, MinLikes = 8, MaxLikes = 16, CommentRate = 1.0, Seed = 7 });
        using var dir = new TestDir();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var embeddings = Path.Combine(dir.Path, "embeddings");
        await LSVCR.Embeddings.EmbeddingJob.RunAsync(data.Catalog, embeddings, new LSVCR.Embeddings.EmbedOptions());
        var photos = Npy.Read(Path.Combine(embeddings, LSVCR.Embeddings.EmbeddingManifest.PhotoFile));
        var comments = Npy.Read(Path.Combine(embeddings, LSVCR.Embeddings.EmbeddingManifest.CommentFile));
        output.WriteLine($"embeddings {clock.Elapsed.TotalSeconds:F1} s");
        var options = new ExperimentOptions
        {
            OutDir = Path.Combine(dir.Path, "experiment"),
            Variants = [Variants.Full, Variants.IdOnly, Variants.Popularity],
            Training = new TrainOptions { Epochs = 6, BatchSize = 32, Patience = 6, Seed = 1 },
        };
        var report = await ExperimentRunner.RunAsync(data, photos, comments, options);
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s");
        output.WriteLine(report.ToMarkdown());

        // The reference protocol of each task. Full ranking over all 400 videos is in the report but not asserted: its
        // ndcg@10 is ~0.05 on 200 test examples, where a 0.02 margin is below the noise of this budget (see docs/training.md).
        foreach (var (task, protocol) in new[] { (TaskKind.Rec, Protocols.Sampled), (TaskKind.CommRank, Protocols.VideoComments) })
        {
            double full = report.Get(task, Variants.Full, protocol)["ndcg@10"];
            double pop = report.Get(task, Variants.Popularity, protocol)["ndcg@10"];
            double ids = report.Get(task, Variants.IdOnly, protocol)["ndcg@10"];
            Assert.True(full > pop + 0.02, $"{task}/{protocol}: full {full:F4} vs popularity {pop:F4}");
            Assert.True(full > ids + 0.02, $"{task}/{protocol}: full {full:F4} vs id-only {ids:F4}");
        }
        Assert.True(File.Exists(Path.Combine(options.OutDir, ExperimentRunner.ReportMarkdown)));
        Assert.True(File.Exists(Path.Combine(options.OutDir, ExperimentRunner.ReportJson)));

        // The pictures: report.md starts with the tables as ToMarkdown writes them, then links (relative) to SVG files
        // that exist beside it — the curves of both tasks and the ndcg@10 bars of every task/protocol.
        var markdown = File.ReadAllText(Path.Combine(options.OutDir, ExperimentRunner.ReportMarkdown));
        Assert.StartsWith(report.ToMarkdown(), markdown);
        var links = System.Text.RegularExpressions.Regex.Matches(markdown, @"!\[[^\]]*\]\(([^)]+)\)").Select(m => m.Groups[1].Value).ToList();
        Assert.Contains("curves-rec.svg", links);
        Assert.Contains("curves-commrank.svg", links);
        Assert.Equal(report.Rows.Select(r => (r.Task, r.Protocol)).Distinct().Count() + 2, links.Count);
        foreach (var link in links)
        {
            var file = Path.Combine(options.OutDir, link);
            Assert.True(File.Exists(file), $"report.md links to {link}, which is missing");
            Assert.Equal("svg", System.Xml.Linq.XDocument.Load(file).Root!.Name.LocalName);
        }
        var html = File.ReadAllText(Path.Combine(options.OutDir, ReportCharts.HtmlFile));
        foreach (var link in links) Assert.Contains($"src=\"{link}\"", html);
    }
}
