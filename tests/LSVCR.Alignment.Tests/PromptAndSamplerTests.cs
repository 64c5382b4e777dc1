using LSVCR.Data;

namespace LSVCR.Alignment.Tests;

public class PromptAndSamplerTests
{
    private static readonly Lazy<LsvcrDataset> Data = new(AlignTrainerTests.TinyData);

    /// <summary>Whole-word tokens (ids by first appearance), so prompts can be read back.</summary>
    private sealed class WordTokenizer : BackboneTokenizer
    {
        public readonly List<string> Words = ["[PAD]", "[CLS]", "[SEP]"];
        public override int[] Encode(string text) => text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(w =>
        {
            int i = Words.IndexOf(w);
            if (i < 0) { Words.Add(w); i = Words.Count - 1; }
            return i;
        }).ToArray();
        public override int PadId => 0;
        public override IReadOnlyList<int> Prefix { get; } = [1];
        public override IReadOnlyList<int> Suffix { get; } = [2];
        public string Decode(IEnumerable<int> ids) => string.Join(' ', ids.Select(i => Words[i]));
    }

    private static Stage1Example Example(TaskKind task, bool videoFirst)
    {
        var sampler = new Stage1Sampler(Data.Value) { AugmentHistory = 0 };
        var (_, index) = sampler.Pool().First(p => p.Task == task && Data.Value[task, Split.Train].PhotoHistoryOf(p.Index).Length >= 3);
        return sampler.Draw(task, index, new Random(1)) with { VideoHistoryFirst = videoFirst };
    }

    [Fact]
    public void Prompt_lists_both_histories_in_the_drawn_order_then_the_task()
    {
        var tok = new WordTokenizer();
        var builder = new PromptBuilder(Data.Value.Catalog, tok, 4096, withResponse: false);
        var videoFirst = tok.Decode(builder.Build(Example(TaskKind.Rec, true)).Ids);
        var commentFirst = tok.Decode(builder.Build(Example(TaskKind.Rec, false)).Ids);
        Assert.True(videoFirst.IndexOf("liked,", StringComparison.Ordinal) < videoFirst.IndexOf("interacted", StringComparison.Ordinal));
        Assert.True(commentFirst.IndexOf("interacted", StringComparison.Ordinal) < commentFirst.IndexOf("liked,", StringComparison.Ordinal));
        Assert.StartsWith("[CLS]", videoFirst);
        Assert.EndsWith("recommend the next video this user will like. Answer: [SEP]", videoFirst);
    }

    [Fact]
    public void Decoder_prompts_carry_the_response_and_encoders_do_not()
    {
        var tok = new WordTokenizer();
        var ex = Example(TaskKind.CommRank, true);
        var withResponse = new PromptBuilder(Data.Value.Catalog, tok, 4096, withResponse: true).Build(ex);
        var response = tok.Decode(withResponse.Ids.Where((_, i) => withResponse.Response[i]));
        Assert.Equal(string.Join(' ', Data.Value.Catalog.CommentTexts[ex.ResponseComment].Split(' ', StringSplitOptions.RemoveEmptyEntries)), response);
        Assert.Equal(withResponse.Response.Count(r => !r) - 1, withResponse.LastPromptToken);
        var encoder = new PromptBuilder(Data.Value.Catalog, tok, 4096, withResponse: false).Build(ex);
        Assert.DoesNotContain(true, encoder.Response);
        Assert.Equal(encoder.Ids.Length - 1, encoder.LastPromptToken);
        Assert.Contains($"watching \"{Data.Value.Catalog.PhotoTitles[ex.TargetPhoto].Split(' ')[0]}", tok.Decode(encoder.Ids));
    }

    [Fact]
    public void Truncation_drops_the_oldest_entries_and_keeps_the_task()
    {
        var tok = new WordTokenizer();
        var ex = Example(TaskKind.Rec, true);
        var full = new PromptBuilder(Data.Value.Catalog, tok, 4096, false).Build(ex);
        var cut = new PromptBuilder(Data.Value.Catalog, tok, full.Ids.Length - 10, false).Build(ex);
        Assert.True(cut.Ids.Length <= full.Ids.Length - 10);
        var text = tok.Decode(cut.Ids);
        Assert.EndsWith("Answer: [SEP]", text);
        // The most recent video is still there.
        var last = Data.Value.Catalog.PhotoTitles[ex.Videos[^1].Photo].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
        Assert.Contains(last, text);
    }

    [Fact]
    public void Augmentation_replaces_entries_only_when_drawn()
    {
        var data = Data.Value;
        var plain = new Stage1Sampler(data) { AugmentHistory = 0 };
        var always = new Stage1Sampler(data) { AugmentHistory = 1, AugmentEntry = 1 };
        var (task, index) = plain.Pool().First(p => p.Task == TaskKind.Rec && data[TaskKind.Rec, Split.Train].PhotoHistoryOf(p.Index).Length >= 4);
        var a = plain.Draw(task, index, new Random(3));
        var b = plain.Draw(task, index, new Random(3));
        Assert.Equal(a.Videos, b.Videos); // same generator state → same draw
        var shown = a.Videos.Select(v => v.Comment).ToArray();
        // Shown comments are among each video's first 3.
        Assert.All(a.Videos, v => Assert.Contains(v.Comment, data.Catalog.CommentsOf(v.Photo)[..Math.Min(3, data.Catalog.CommentsOf(v.Photo).Length)].ToArray()));
        int changed = 0;
        for (int seed = 0; seed < 10; seed++)
        {
            var plainDraw = plain.Draw(task, index, new Random(seed));
            var augDraw = always.Draw(task, index, new Random(seed));
            Assert.Equal(plainDraw.Videos.Select(v => v.Photo), augDraw.Videos.Select(v => v.Photo)); // the videos stay
            changed += plainDraw.Videos.Zip(augDraw.Videos).Count(p => p.First.Comment != p.Second.Comment);
        }
        Assert.True(changed > 0, "p = 1 augmentation never changed a shown comment");
        Assert.True(a.Videos.Length <= plain.MaxHistory);
    }
}
