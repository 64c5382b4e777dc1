using LSVCR.Data;

namespace LSVCR.Training.Tests;

/// <summary>
/// Test stand-in for the MiniLM embeddings: a TF-IDF-weighted hashed bag-of-words random projection. Each lower-cased
/// word maps to a fixed pseudo-random Gaussian vector (seeded by a stable hash of the word); a text is the normalised
/// IDF-weighted sum of its words. Texts sharing topic or style words land near each other, which is the signal the real
/// embeddings carry. The IDF weight matters: unweighted, the template words every title shares ("how", "the", "in")
/// dominate the sum and title similarity ranks next videos worse than popularity (measured on the test's data:
/// ndcg@10 0.086 vs 0.123); IDF-weighted, topic words dominate (0.123–0.147), as in a sentence encoder.
/// </summary>
public static class HashedText
{
    public static (FloatMatrix Photos, FloatMatrix Comments) Embed(Catalog catalog, int dim = 256) =>
        (Embed(catalog.PhotoTitles, dim), Embed(catalog.CommentTexts, dim));

    public static FloatMatrix Embed(IReadOnlyList<string> texts, int dim)
    {
        var data = new float[texts.Count * dim];
        var cache = new Dictionary<string, float[]>();
        var words = texts.Select(Words).ToArray();
        var df = new Dictionary<string, int>();
        foreach (var w in words.Skip(1).SelectMany(ws => ws.Distinct())) df[w] = df.GetValueOrDefault(w) + 1;
        for (int i = 1; i < texts.Count; i++)   // row 0 = pad stays zero
        {
            var row = data.AsSpan(i * dim, dim);
            foreach (var word in words[i])
            {
                if (!cache.TryGetValue(word, out var v)) cache[word] = v = WordVector(word, dim);
                float idf = (float)Math.Log((double)texts.Count / df[word]);
                for (int j = 0; j < dim; j++) row[j] += idf * v[j];
            }
            double norm = 0;
            foreach (float x in row) norm += x * x;
            if (norm > 0) for (int j = 0; j < dim; j++) row[j] /= (float)Math.Sqrt(norm);
        }
        return new FloatMatrix(data, texts.Count, dim);
    }

    private static string[] Words(string text) =>
        text.ToLowerInvariant().Split([' ', ',', '.', '!', '?', '\'', '"', '-'], StringSplitOptions.RemoveEmptyEntries);

    private static float[] WordVector(string word, int dim)
    {
        uint h = 2166136261;   // FNV-1a: stable across processes, unlike string.GetHashCode
        foreach (char c in word) h = (h ^ c) * 16777619;
        var rng = new Random((int)h);
        var v = new float[dim];
        for (int j = 0; j < dim; j++)
            v[j] = (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        return v;
    }
}
