using LSVCR.Data;

namespace LSVCR.Training.Tests;

public class EvaluatorTests
{
    private const double Eps = 1e-12;

    [Fact]
    public void Popularity_full_ranking_matches_hand_computed_ranks()
    {
        var data = Tiny.Dataset();
        var r = Evaluator.Evaluate(new PopularityScorer(data), data, TaskKind.Rec, Split.Test, Protocols.Full, new EvalOptions());
        // Scores v1 = 1, v2 = 2, v3 = v4 = 0. Targets 2 → rank 1; 3 → rank 4 (v2, v1 higher; tied v4 ahead); 1 → rank 2.
        Assert.Equal(3, r.Examples);
        Assert.Equal("rec", r.Task);
        Assert.Equal("test", r.Split);
        Assert.Equal(1.0 / 3, r["hit@1"], Eps);
    }

    [Fact]
    public void Popularity_full_ranking_metrics()
    {
        var data = Tiny.Dataset();
        var r = Evaluator.Evaluate(new PopularityScorer(data), data, TaskKind.Rec, Split.Test, Protocols.Full, new EvalOptions { Ks = [2] });
        Assert.Equal(2.0 / 3, r["recall@2"], Eps);
        Assert.Equal(1.0, r["recall@5"], Eps);
        Assert.Equal((1 + 1 / Math.Log2(5) + 1 / Math.Log2(3)) / 3, r["ndcg@5"], Eps);
        Assert.Equal((1 + 0.25 + 0.5) / 3, r["mrr@5"], Eps);
        Assert.Equal((1 + 0.5) / 3, r["mrr@2"], Eps);
        // The sampled protocol with fewer than 99 other videos ranks the whole catalogue: same numbers.
        var s = Evaluator.Evaluate(new PopularityScorer(data), data, TaskKind.Rec, Split.Test, Protocols.Sampled, new EvalOptions { Ks = [2] });
        Assert.Equal(r.Metrics, s.Metrics);
        Assert.Equal("sampled", s.Protocol);
    }

    [Fact]
    public void Popularity_comment_ranking_follows_comment_list_order()
    {
        var data = Tiny.Dataset();
        var r = Evaluator.Evaluate(new PopularityScorer(data), data, TaskKind.CommRank, Split.Test, null, new EvalOptions());
        // Watching v1, positive 3 is third of [1,2,3,4]; watching v4, positives 6 and 7 are the whole list.
        Assert.Equal("video-comments", r.Protocol);
        Assert.Equal(2, r.Examples);
        Assert.Equal((0 + 1) / 2.0, r["hit@1"], Eps);
        Assert.Equal((0 + 0.5) / 2.0, r["recall@1"], Eps);
        Assert.Equal((0.5 + 1) / 2.0, r["ndcg@5"], Eps);
        Assert.Equal((1.0 / 3 + 1) / 2.0, r["mrr@10"], Eps);
    }

    [Fact]
    public void Json_has_the_documented_shape()
    {
        var data = Tiny.Dataset();
        var json = Evaluator.Evaluate(new PopularityScorer(data), data, TaskKind.CommRank, Split.Test, null, new EvalOptions { Ks = [1] }).ToJson();
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        var root = doc.RootElement;
        Assert.Equal("commrank", root.GetProperty("task").GetString());
        Assert.Equal("test", root.GetProperty("split").GetString());
        Assert.Equal("video-comments", root.GetProperty("protocol").GetString());
        Assert.Equal(2, root.GetProperty("examples").GetInt32());
        Assert.Equal(0.5, root.GetProperty("metrics").GetProperty("hit@1").GetDouble(), Eps);
    }

    [Fact]
    public void Protocols_that_do_not_apply_are_rejected_with_a_clear_message()
    {
        var data = Tiny.Dataset();
        var e = Assert.Throws<LsvcrException>(() =>
            Evaluator.Evaluate(new PopularityScorer(data), data, TaskKind.CommRank, Split.Test, Protocols.Full, new EvalOptions()));
        Assert.Contains("protocol 'full' does not apply to commrank", e.Message);
    }

    [Fact]
    public void Learning_rate_warms_up_then_is_constant_or_decays_linearly()
    {
        // Hugging Face's warmup: ceil(0.1 × 100) = 10 steps at 0, 0.1, …, 0.9 × lr, then lr.
        var constant = new TrainOptions { Lr = 1.0, Warmup = 0.1 };
        Assert.Equal(10, FineTuner.WarmupSteps(constant, 100));
        Assert.Equal(0.0, FineTuner.LearningRate(constant, 0, 100), Eps);
        Assert.Equal(0.1, FineTuner.LearningRate(constant, 1, 100), Eps);
        Assert.Equal(0.9, FineTuner.LearningRate(constant, 9, 100), Eps);
        Assert.Equal(1.0, FineTuner.LearningRate(constant, 10, 100), Eps);
        Assert.Equal(1.0, FineTuner.LearningRate(constant, 99, 100), Eps);
        // Rounded up: 3 % of 50 steps is 1.5, so 2 warmup steps (lr 0, then lr / 2); the reference's stage-1 ratio.
        var stage1 = new TrainOptions { Lr = 1.0, Warmup = 0.03 };
        Assert.Equal(2, FineTuner.WarmupSteps(stage1, 50));
        Assert.Equal(0.5, FineTuner.LearningRate(stage1, 1, 50), Eps);
        Assert.Equal(1.0, FineTuner.LearningRate(stage1, 2, 50), Eps);
        Assert.Equal(0, FineTuner.WarmupSteps(new TrainOptions(), 1000));
        Assert.Equal(1e-3, FineTuner.LearningRate(new TrainOptions(), 0, 1000), Eps);
        var linear = constant with { Schedule = "linear" };
        Assert.Equal(1.0, FineTuner.LearningRate(linear, 10, 100), Eps);
        Assert.Equal(0.5, FineTuner.LearningRate(linear, 55, 100), Eps);
        Assert.Equal(1.0 / 90, FineTuner.LearningRate(linear, 99, 100), Eps);
    }

    [Fact]
    public void Embeddings_that_do_not_match_the_catalogue_name_the_file()
    {
        var catalog = Tiny.Catalog();
        var photos = new FloatMatrix(new float[4 * 3], 4, 3);
        var comments = new FloatMatrix(new float[8 * 3], 8, 3);
        var e = Assert.Throws<LsvcrException>(() => TextEmbeddings.Check(photos, comments, catalog, "emb"));
        Assert.Equal("emb/photo_embs.npy: 4 rows but the catalogue has 5 videos (pad row included)", e.Message);
    }
}
