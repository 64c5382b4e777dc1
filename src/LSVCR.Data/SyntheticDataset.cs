using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using static LSVCR.Data.SynthVocabulary;

namespace LSVCR.Data;

public sealed record SynthOptions
{
    public int Users { get; init; } = 1000;
    public int Seed { get; init; } = 42;
    /// <summary>Catalogue size; 0 scales it with the users: max(topics × max likes / 2, users / 2).</summary>
    public int Videos { get; init; }
    /// <summary>Mean comments per video (each video gets between half and one and a half times this).</summary>
    public int CommentsPerVideo { get; init; } = 8;
    /// <summary>Number of topics used, at most the 16 of the vocabulary.</summary>
    public int Topics { get; init; } = 16;
    public int MinLikes { get; init; } = 10;
    public int MaxLikes { get; init; } = 40;
    public int MaxHistory { get; init; } = 50;
    /// <summary>Probability that the user interacts with comments under a video they liked.</summary>
    public double CommentRate { get; init; } = 0.5;
    /// <summary>Probability per step of also watching (without liking) another video and interacting with its comments.</summary>
    public double ExtraWatchRate { get; init; } = 0.2;

    internal int VideoCount => Videos > 0 ? Videos : Math.Max(Topics * MaxLikes / 2, Users / 2);

    internal void Check()
    {
        void Require(bool ok, string message) { if (!ok) throw new LsvcrException(message); }
        Require(Users >= 1, $"users must be at least 1 (got {Users})");
        Require(Topics is >= 1 and <= 16, $"topics must be between 1 and {SynthVocabulary.Topics.Length} (got {Topics})");
        Require(Videos == 0 || Videos >= 4 * Topics, $"videos must be at least 4 per topic ({4 * Topics}) so users have enough to like (got {Videos})");
        Require(CommentsPerVideo >= 1, $"comments per video must be at least 1 (got {CommentsPerVideo})");
        Require(MinLikes >= 3 && MaxLikes >= MinLikes, $"likes per user must satisfy 3 ≤ min ≤ max (got {MinLikes}..{MaxLikes})");
        Require(MaxHistory >= 1, $"max history must be at least 1 (got {MaxHistory})");
        Require(CommentRate is >= 0 and <= 1 && ExtraWatchRate is >= 0 and <= 1, "comment and extra-watch rates must be probabilities");
    }
}

/// <summary>
/// Generates a synthetic dataset that behaves like real interaction logs (see docs/data.md): topic-driven users with
/// drifting interests, Zipf popularity, and comment choices driven by a latent per-user style that only the comment
/// history reveals. Single pass over users with one seeded generator, so the output is a pure function of the options.
/// </summary>
public static class SyntheticDataset
{
    private const double StayInTopic = 0.65, DriftShare = 0.5, VideoZipf = 0.9, CommentZipf = 0.8, TopicZipf = 0.6;
    private const double MainStyleAffinity = 0.85, OtherStyleAffinity = 0.05;
    private static readonly int StyleCount = CommentTemplates.Length;

    public static LsvcrDataset Generate(SynthOptions options, IProgress<JobProgress>? progress = null)
    {
        options.Check();
        var rng = new Random(options.Seed);
        var items = Items.Create(options, rng);
        var builders = new Dictionary<(TaskKind, Split), ExampleSetBuilder>();
        foreach (var task in Enum.GetValues<TaskKind>())
            foreach (var split in Enum.GetValues<Split>())
                builders[(task, split)] = new ExampleSetBuilder(task, split);
        var user = new UserTimeline(items, options);
        for (int u = 1; u <= options.Users; u++)
        {
            user.Simulate(rng);
            user.Emit(u.ToString(CultureInfo.InvariantCulture), builders);
            if (u % 1000 == 0 || u == options.Users) progress?.Report(new("synth", u, options.Users));
        }
        return new LsvcrDataset(items.ToCatalog(), builders.Values.Select(b => b.Build()));
    }

    /// <summary>Videos and comments: topic, Zipf popularity within the topic, text; comments carry a style.</summary>
    private sealed class Items
    {
        public int Topics;
        public double[] TopicCumulative = [];
        public int[][] TopicVideos = [];          // per topic, videos in popularity order
        public double[][] TopicVideoCumulative = [];
        public string[] Titles = [];
        public int[] CommentOffsets = [];         // CSR per video, comments in popularity order
        public int[] CommentStyle = [];
        public string[] CommentTexts = [];

        public static Items Create(SynthOptions o, Random rng)
        {
            int videos = o.VideoCount, topics = o.Topics;
            var items = new Items { Topics = topics };
            var topicWeights = new double[topics];
            var topicOrder = Shuffled(rng, topics);
            for (int k = 0; k < topics; k++) topicWeights[topicOrder[k]] = 1 / Math.Pow(k + 1, TopicZipf);
            items.TopicCumulative = Cumulative(topicWeights);

            // Every topic gets at least a quarter of its fair share of videos; the rest follow topic popularity.
            var videoTopic = new int[videos + 1];
            int floor = Math.Max(2, videos / topics / 4), v = 1;
            for (int k = 0; k < topics; k++)
                for (int i = 0; i < floor; i++) videoTopic[v++] = k;
            for (; v <= videos; v++) videoTopic[v] = Sample(rng, items.TopicCumulative);
            Shuffle(rng, videoTopic.AsSpan(1));
            var lists = Enumerable.Range(0, topics).Select(_ => new List<int>()).ToArray();
            for (v = 1; v <= videos; v++) lists[videoTopic[v]].Add(v);
            items.TopicVideos = lists.Select(l => l.ToArray()).ToArray();
            items.TopicVideoCumulative = items.TopicVideos.Select(l => Cumulative(Zipf(l.Length, VideoZipf))).ToArray();

            items.Titles = new string[videos + 1];
            items.Titles[0] = "";
            items.CommentOffsets = new int[videos + 2];
            var styles = new List<int> { 0 };
            var texts = new List<string> { "" };
            var text = new StringBuilder();
            for (v = 1; v <= videos; v++)
            {
                var topic = SynthVocabulary.Topics[videoTopic[v]];
                string noun = Pick(rng, topic.Nouns);
                items.Titles[v] = Fill(text, Pick(rng, TitleTemplates), topic, noun, rng);
                int count = Math.Max(1, o.CommentsPerVideo / 2 + rng.Next(o.CommentsPerVideo + 1));
                for (int j = 0; j < count; j++)
                {
                    int style = rng.Next(StyleCount);
                    // Half the comments talk about the video's own subject, the rest about the topic at large.
                    string subject = rng.NextDouble() < 0.5 ? noun : Pick(rng, topic.Nouns);
                    styles.Add(style);
                    texts.Add(Fill(text, Pick(rng, CommentTemplates[style]), topic, subject, rng));
                }
                items.CommentOffsets[v + 1] = items.CommentOffsets[v] + count;
            }
            items.CommentOffsets[0] = 0;
            items.CommentOffsets[1] = 0;
            items.CommentStyle = [.. styles];
            items.CommentTexts = [.. texts];
            return items;
        }

        public int VideoCount => Titles.Length - 1;

        public Catalog ToCatalog()
        {
            int videos = VideoCount, comments = CommentTexts.Length - 1;
            var photoIds = new string[videos + 1];
            var commentIds = new string[comments + 1];
            photoIds[0] = commentIds[0] = Catalog.PadId;
            for (int v = 1; v <= videos; v++) photoIds[v] = v.ToString(CultureInfo.InvariantCulture);
            for (int c = 1; c <= comments; c++) commentIds[c] = c.ToString(CultureInfo.InvariantCulture);
            // Comments are numbered video by video, so video v holds comments offsets[v] + 1 .. offsets[v + 1].
            var list = new int[comments];
            for (int i = 0; i < comments; i++) list[i] = i + 1;
            return new Catalog(photoIds, Titles, CommentOffsets, list, commentIds, CommentTexts);
        }

        /// <summary>Comments of video v as internal ids, most popular first.</summary>
        public (int First, int Count) CommentsOf(int v) => (CommentOffsets[v] + 1, CommentOffsets[v + 1] - CommentOffsets[v]);

        private static string Fill(StringBuilder sb, string template, Topic topic, string noun, Random rng)
        {
            sb.Clear().Append(template);
            string other = Pick(rng, topic.Nouns);
            if (other == noun) other = topic.Nouns[(Array.IndexOf(topic.Nouns, noun) + 1) % topic.Nouns.Length];
            string adjective = Pick(rng, topic.Adjectives), gerund = Pick(rng, topic.Gerunds);
            sb.Replace("{N}", Capitalize(noun)).Replace("{n}", noun).Replace("{m}", other)
              .Replace("{A}", Capitalize(adjective)).Replace("{a}", adjective).Replace("{g}", gerund);
            var s = sb.ToString();
            return char.IsLower(s[0]) ? Capitalize(s) : s;
        }

        private static string Capitalize(string s) => string.Concat(s[..1].ToUpperInvariant(), s.AsSpan(1));
    }

    /// <summary>One user's simulated timeline, reused across users to keep generation allocation-free.</summary>
    private sealed class UserTimeline(Items items, SynthOptions o)
    {
        private readonly bool[] _touched = new bool[items.VideoCount + 1];
        private readonly List<int> _touchedList = [];
        private readonly List<int> _likes = [];              // liked video at step s has time 3s
        private readonly List<int> _entryVideo = [], _entryTime = [], _entryLength = [], _entryComments = [];
        private readonly List<int> _entryStart = [];
        private readonly int[] _interests = new int[3];
        private readonly double[] _interestWeight = new double[3];
        private readonly double[] _styleAffinity = new double[StyleCount];
        private int _interestCount;

        public void Simulate(Random rng)
        {
            foreach (int v in _touchedList) _touched[v] = false;
            _touchedList.Clear();
            _likes.Clear();
            _entryVideo.Clear(); _entryTime.Clear(); _entryLength.Clear(); _entryComments.Clear(); _entryStart.Clear();

            int length = rng.Next(o.MinLikes, o.MaxLikes + 1);
            _interestCount = Math.Min(items.Topics, rng.NextDouble() < 0.4 ? 3 : 2);
            for (int i = 0; i < _interestCount; i++)
            {
                _interests[i] = NewTopic(rng, i);
                _interestWeight[i] = 0.2 + rng.NextDouble();
            }
            int mainStyle = rng.Next(StyleCount);
            for (int s = 0; s < StyleCount; s++) _styleAffinity[s] = s == mainStyle ? MainStyleAffinity : OtherStyleAffinity;
            int drift = items.Topics > _interestCount && rng.NextDouble() < DriftShare ? rng.Next(length / 3, 2 * length / 3 + 1) : -1;

            int current = _interests[SampleInterest(rng)];
            for (int step = 0; step < length; step++)
            {
                if (step == drift)
                {
                    // Interest drift: one interest is replaced for good, and the user starts exploring it at once.
                    int slot = rng.Next(_interestCount);
                    _interests[slot] = NewTopic(rng, _interestCount);
                    current = _interests[slot];
                }
                else if (rng.NextDouble() >= StayInTopic) current = _interests[SampleInterest(rng)];

                int liked = PickVideo(rng, ref current);
                if (liked == 0) break;
                _likes.Add(liked);
                if (rng.NextDouble() < o.CommentRate) InteractWithComments(rng, liked, 3 * step + 1);
                if (rng.NextDouble() < o.ExtraWatchRate && PickVideo(rng, ref current) is > 0 and var watched)
                    InteractWithComments(rng, watched, 3 * step + 2);
            }
        }

        /// <summary>A popularity-weighted topic not among the first <paramref name="count"/> interests.</summary>
        private int NewTopic(Random rng, int count)
        {
            while (true)
            {
                int t = Sample(rng, items.TopicCumulative);
                if (Array.IndexOf(_interests, t, 0, count) < 0) return t;
            }
        }

        private int SampleInterest(Random rng)
        {
            double total = 0;
            for (int i = 0; i < _interestCount; i++) total += _interestWeight[i];
            double x = rng.NextDouble() * total;
            for (int i = 0; i < _interestCount - 1; i++)
                if ((x -= _interestWeight[i]) < 0) return i;
            return _interestCount - 1;
        }

        /// <summary>A popular-first video of the topic the user has not seen yet (another interest if it is exhausted).</summary>
        private int PickVideo(Random rng, ref int topic)
        {
            for (int attempt = 0; attempt < 2 * _interestCount + 1; attempt++)
            {
                var videos = items.TopicVideos[topic];
                for (int tries = 0; tries < 16; tries++)
                {
                    int v = videos[Sample(rng, items.TopicVideoCumulative[topic])];
                    if (!_touched[v]) return Touch(v);
                }
                foreach (int v in videos)
                    if (!_touched[v]) return Touch(v);
                topic = _interests[attempt % _interestCount];
            }
            return 0;
        }

        private int Touch(int v)
        {
            _touched[v] = true;
            _touchedList.Add(v);
            return v;
        }

        /// <summary>One or two comments, chosen by popularity × the user's affinity for the comment's style.</summary>
        private void InteractWithComments(Random rng, int video, int time)
        {
            var (first, count) = items.CommentsOf(video);
            int want = Math.Min(count, rng.NextDouble() < 0.3 ? 2 : 1);
            _entryVideo.Add(video);
            _entryTime.Add(time);
            _entryStart.Add(_entryComments.Count);
            int chosenA = -1;
            for (int k = 0; k < want; k++)
            {
                double total = 0;
                for (int j = 0; j < count; j++) total += j == chosenA ? 0 : Weight(first, j);
                double x = rng.NextDouble() * total;
                int pick = count - 1;
                for (int j = 0; j < count; j++)
                {
                    if (j == chosenA) continue;
                    if ((x -= Weight(first, j)) < 0) { pick = j; break; }
                }
                if (pick == chosenA) pick = chosenA == 0 ? 1 : 0;
                chosenA = pick;
                _entryComments.Add(first + pick);
            }
            _entryLength.Add(want);
        }

        private double Weight(int first, int rank) =>
            _styleAffinity[items.CommentStyle[first + rank]] / Math.Pow(rank + 1, CommentZipf);

        /// <summary>Turns the timeline into examples: each uses only events strictly before its target (KuaiComt rule).</summary>
        public void Emit(string userId, Dictionary<(TaskKind, Split), ExampleSetBuilder> builders)
        {
            _entryStart.Add(_entryComments.Count);
            // Rec: the like at step s (time 3s) sees likes of steps < s and comment entries with time < 3s.
            int recTargets = _likes.Count - 1, entries = 0;
            for (int s = 1; s < _likes.Count; s++)
            {
                while (entries < _entryTime.Count && _entryTime[entries] < 3 * s) entries++;
                Add(builders[(TaskKind.Rec, SplitOf(s - 1, recTargets))], userId, _likes[s], s, entries, default);
            }
            // CommRank: entry e (time t) sees likes with time < t (a like always precedes it) and the entries before it.
            for (int e = 0; e < _entryTime.Count; e++)
            {
                int likesBefore = Math.Min(_likes.Count, (_entryTime[e] + 2) / 3);
                var positives = CollectionsMarshal.AsSpan(_entryComments)[_entryStart[e].._entryStart[e + 1]];
                Add(builders[(TaskKind.CommRank, SplitOf(e, _entryTime.Count))], userId, _entryVideo[e], likesBefore, e, positives);
            }
        }

        private void Add(ExampleSetBuilder b, string userId, int target, int likeCount, int entryCount, ReadOnlySpan<int> positives)
        {
            int p0 = Math.Max(0, likeCount - o.MaxHistory), e0 = Math.Max(0, entryCount - o.MaxHistory);
            b.Add(userId, target, CollectionsMarshal.AsSpan(_likes)[p0..likeCount], CollectionsMarshal.AsSpan(_entryVideo)[e0..entryCount],
                CollectionsMarshal.AsSpan(_entryLength)[e0..entryCount],
                CollectionsMarshal.AsSpan(_entryComments)[_entryStart[e0].._entryStart[entryCount]], positives);
        }

        /// <summary>Per user and task: the last target is test, the one before it val, all earlier ones train.</summary>
        private static Split SplitOf(int index, int count) =>
            index == count - 1 ? Split.Test : index == count - 2 ? Split.Val : Split.Train;
    }

    // ---------------------------------------------------------------- sampling helpers

    private static double[] Zipf(int n, double exponent)
    {
        var w = new double[n];
        for (int i = 0; i < n; i++) w[i] = 1 / Math.Pow(i + 1, exponent);
        return w;
    }

    private static double[] Cumulative(double[] weights)
    {
        var c = new double[weights.Length];
        double sum = 0;
        for (int i = 0; i < weights.Length; i++) c[i] = sum += weights[i];
        return c;
    }

    private static int Sample(Random rng, double[] cumulative)
    {
        int i = Array.BinarySearch(cumulative, rng.NextDouble() * cumulative[^1]);
        return Math.Min(i < 0 ? ~i : i, cumulative.Length - 1);
    }

    private static T Pick<T>(Random rng, T[] values) => values[rng.Next(values.Length)];

    private static int[] Shuffled(Random rng, int n)
    {
        var a = Enumerable.Range(0, n).ToArray();
        Shuffle(rng, a.AsSpan());
        return a;
    }

    private static void Shuffle(Random rng, Span<int> a)
    {
        for (int i = a.Length - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (a[i], a[j]) = (a[j], a[i]);
        }
    }
}
