using LSVCR.Data;

namespace LSVCR.Training.Tests;

/// <summary>
/// Test stand-in for the MiniLM embeddings: a hashed bag-of-words random projection. Each lower-cased word maps to a
/// fixed pseudo-random Gaussian vector (seeded by a stable hash of the word); a text is the normalised sum of its words.
/// Texts sharing topic or style words land near each other, which is the signal the real embeddings carry.
/// </summary>
public static class HashedText
{
    public static (FloatMatrix Photos, FloatMatrix Comments) Embed(Catalog catalog, int dim = 256) =>
        (Embed(catalog.PhotoTitles, dim), Embed(catalog.CommentTexts, dim));

    public static FloatMatrix Embed(IReadOnlyList<string> texts, int dim)
    {
        var data = new float[texts.Count * dim];
        var cache = new Dictionary<string, float[]>();
        for (int i = 1; i < texts.Count; i++)   // row 0 = pad stays zero
        {
            var row = data.AsSpan(i * dim, dim);
            foreach (var word in texts[i].ToLowerInvariant().Split([' ', ',', '.', '!', '?', '\'', '"', '-'], StringSplitOptions.RemoveEmptyEntries))
            {
                if (!cache.TryGetValue(word, out var v)) cache[word] = v = WordVector(word, dim);
                for (int j = 0; j < dim; j++) row[j] += v[j];
            }
            double norm = 0;
            foreach (float x in row) norm += x * x;
            if (norm > 0) for (int j = 0; j < dim; j++) row[j] /= (float)Math.Sqrt(norm);
        }
        return new FloatMatrix(data, texts.Count, dim);
    }

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
