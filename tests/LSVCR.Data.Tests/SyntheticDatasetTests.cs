using Xunit.Abstractions;

namespace LSVCR.Data.Tests;

public class SyntheticDatasetTests(ITestOutputHelper output)
{
    private static readonly Lazy<LsvcrDataset> Default = new(() => SyntheticDataset.Generate(new SynthOptions { Users = 2000, Seed = 7 }));

    [Fact]
    public void Same_seed_writes_byte_identical_files_and_another_seed_does_not()
    {
        using var a = new TestDir();
        using var b = new TestDir();
        using var c = new TestDir();
        ReferenceLayout.Write(SyntheticDataset.Generate(new SynthOptions { Users = 150, Seed = 3 }), a.Path);
        ReferenceLayout.Write(SyntheticDataset.Generate(new SynthOptions { Users = 150, Seed = 3 }), b.Path);
        ReferenceLayout.Write(SyntheticDataset.Generate(new SynthOptions { Users = 150, Seed = 4 }), c.Path);
        var files = Directory.GetFiles(a.Path).Select(Path.GetFileName).Order().ToArray();
        Assert.Equal(10, files.Length);
        foreach (var f in files)
            Assert.Equal(File.ReadAllBytes(a.File(f!)), File.ReadAllBytes(b.File(f!)));
        Assert.NotEqual(File.ReadAllBytes(a.File("rec.train.json")), File.ReadAllBytes(c.File("rec.train.json")));
        Assert.Empty(DatasetValidator.Validate(a.Path)); // also: no leakage, all ids known, positives under targets
    }

    [Fact]
    public void Default_size_keeps_the_catalogue_small_enough_to_embed()
    {
        var cat = Default.Value.Catalog;
        Assert.Equal(1000 + 1, cat.PhotoCount); // users / 2 videos (+ pad)
        Assert.InRange(cat.CommentCount - 1, 7000, 9000); // 8 per video on average
        Assert.All(cat.PhotoTitles.Skip(1), t => Assert.False(string.IsNullOrWhiteSpace(t)));
        Assert.True(new SynthOptions { Users = 20_000 }.VideoCount == 10_000, "videos scale with users");
        Assert.Equal(300, SyntheticDataset.Generate(new SynthOptions { Users = 50, Videos = 300, CommentsPerVideo = 2 }).Catalog.PhotoCount - 1);
    }

    [Fact]
    public void Every_user_gets_10_to_40_likes_split_last_to_test_and_second_to_last_to_val()
    {
        var data = Default.Value;
        var rec = data.Sets.Where(s => s.Task == TaskKind.Rec).SelectMany(s => Enumerable.Range(0, s.Count).Select(i => (s, i))).ToArray();
        foreach (var user in rec.GroupBy(x => x.s.UserIds[x.i]))
        {
            var bySplit = user.GroupBy(x => x.s.Split).ToDictionary(g => g.Key, g => g.ToArray());
            Assert.Single(bySplit[Split.Test]);
            Assert.Single(bySplit[Split.Val]);
            int examples = user.Count();
            Assert.InRange(examples, 9, 39); // 10-40 likes, minus the first (it has no history)
            var (ts, ti) = bySplit[Split.Test][0];
            var (vs, vi) = bySplit[Split.Val][0];
            // Test sees the val target as its most recent like; every train target precedes the val target.
            Assert.Equal(vs.TargetPhoto[vi], ts.PhotoHistoryOf(ti)[^1]);
            var testHistory = ts.PhotoHistoryOf(ti).ToArray();
            // At most 40 likes, so the test history is untruncated and holds every training target before the val one.
            foreach (var (s, i) in bySplit[Split.Train]) Assert.Contains(s.TargetPhoto[i], testHistory[..^1]);
        }
        foreach (var set in data.Sets)
            for (int i = 0; i < set.Count; i++)
            {
                Assert.InRange(set.PhotoHistoryOf(i).Length, 0, 50);
                var (a, b) = set.CommentEntriesOf(i);
                Assert.InRange(b - a, 0, 50);
            }
    }

    [Fact]
    public void Rec_next_video_follows_recent_topics_beating_popularity()
    {
        var data = Default.Value;
        var cat = data.Catalog;
        var topicOf = cat.PhotoTitles.Select(TopicOf).ToArray();
        var popularity = new double[cat.PhotoCount];
        var train = data[TaskKind.Rec, Split.Train];
        foreach (int t in train.TargetPhoto) popularity[t]++;
        var byPopularity = Enumerable.Range(1, cat.PhotoCount - 1).OrderByDescending(v => popularity[v]).ToArray();
        var test = data[TaskKind.Rec, Split.Test];
        int popHits = 0, topicHits = 0;
        for (int i = 0; i < test.Count; i++)
        {
            int target = test.TargetPhoto[i], recent = topicOf[test.PhotoHistoryOf(i)[^1]];
            var seen = test.PhotoHistoryOf(i).ToArray().ToHashSet();
            popHits += byPopularity.Where(v => !seen.Contains(v)).Take(10).Contains(target) ? 1 : 0;
            // A text-only heuristic: the title's topic words, recent topic first, then popularity.
            topicHits += byPopularity.Where(v => !seen.Contains(v) && topicOf[v] == recent).Take(10).Contains(target) ? 1 : 0;
        }
        double pop = (double)popHits / test.Count, topic = (double)topicHits / test.Count;
        output.WriteLine($"Rec hit@10: popularity {pop:F3}, recent-topic {topic:F3}");
        Assert.True(topic > 2 * pop && topic > 0.15, $"hit@10 popularity {pop:F3} vs recent-topic {topic:F3}");
    }

    [Fact]
    public void CommRank_positives_match_the_style_of_the_users_comment_history_beating_popularity()
    {
        var data = Default.Value;
        var cat = data.Catalog;
        var test = data[TaskKind.CommRank, Split.Test];
        int popHits = 0, styleHits = 0, counted = 0;
        for (int i = 0; i < test.Count; i++)
        {
            var (a, b) = test.CommentEntriesOf(i);
            if (b - a < 3) continue;
            var styleVotes = new int[4];
            for (int e = a; e < b; e++)
                foreach (int c in test.CommentsOfEntry(e)) styleVotes[StyleOf(cat.CommentTexts[c])]++;
            int style = Array.IndexOf(styleVotes, styleVotes.Max());
            var list = cat.CommentsOf(test.TargetPhoto[i]).ToArray();
            var positives = test.PositivesOf(i).ToArray();
            counted++;
            popHits += positives.Contains(list[0]) ? 1 : 0;
            var styled = list.FirstOrDefault(c => StyleOf(cat.CommentTexts[c]) == style, list[0]);
            styleHits += positives.Contains(styled) ? 1 : 0;
        }
        Assert.True(counted > 500, $"only {counted} test examples with a comment history");
        double pop = (double)popHits / counted, styleRate = (double)styleHits / counted;
        output.WriteLine($"CommRank hit@1: popularity {pop:F3}, history style {styleRate:F3}");
        Assert.True(styleRate > pop + 0.15, $"hit@1 popularity {pop:F3} vs history style {styleRate:F3}");
    }

    [Fact]
    public void Comment_lists_have_popularity_skew_in_user_choices()
    {
        var data = Default.Value;
        var cat = data.Catalog;
        var rank = new int[cat.CommentCount];
        for (int p = 1; p < cat.PhotoCount; p++)
        {
            var list = cat.CommentsOf(p);
            for (int j = 0; j < list.Length; j++) rank[list[j]] = j;
        }
        var ranks = data.Sets.Where(s => s.Task == TaskKind.CommRank).SelectMany(s => s.PositiveComments).Select(c => rank[c]).ToArray();
        double first = ranks.Count(r => r == 0), fifth = ranks.Count(r => r == 4);
        Assert.True(first > 1.5 * fifth, $"top comment chosen {first} times, fifth {fifth}");
    }

    [Fact]
    public void Rejects_options_out_of_range()
    {
        Assert.Throws<LsvcrException>(() => SyntheticDataset.Generate(new SynthOptions { Users = 0 }));
        Assert.Throws<LsvcrException>(() => SyntheticDataset.Generate(new SynthOptions { Topics = 17 }));
        Assert.Throws<LsvcrException>(() => SyntheticDataset.Generate(new SynthOptions { MinLikes = 5, MaxLikes = 4 }));
    }

    private static int TopicOf(string title)
    {
        int best = -1, bestScore = 0;
        for (int t = 0; t < SynthVocabulary.Topics.Length; t++)
        {
            var topic = SynthVocabulary.Topics[t];
            int score = topic.Nouns.Sum(n => title.Contains(n, StringComparison.OrdinalIgnoreCase) ? 2 : 0)
                + topic.Gerunds.Concat(topic.Adjectives).Count(w => title.Contains(w, StringComparison.OrdinalIgnoreCase));
            if (score > bestScore) (best, bestScore) = (t, score);
        }
        return best;
    }

    /// <summary>Style from surface markers only, as a text model would see it.</summary>
    private static int StyleOf(string text) =>
        text.EndsWith('?') ? 3
        : new[] { "lol", "😂", "haha", "lmao", "🤣" }.Any(text.Contains) ? 2
        : new[] { "overrated", "Not impressed", "hype", "misleading", "Worst", "Disappointing" }.Any(text.Contains) ? 1
        : 0;
}
