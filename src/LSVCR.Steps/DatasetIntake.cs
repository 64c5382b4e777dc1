using System.IO.Compression;
using LSVCR.Artifacts;
using LSVCR.Contracts;
using LSVCR.Data;

namespace LSVCR.Steps;

/// <summary>
/// Takes a dataset in: a zipped reference-layout folder (or a synthetic spec) is unpacked, validated and published as the
/// set <c>datasets/{id}</c>. Nothing is published unless the whole dataset is valid.
/// </summary>
public sealed class DatasetIntake(IArtifactStore store)
{
    public const string Kind = "dataset";

    public static string SetOf(string datasetId) => $"datasets/{datasetId}";

    /// <summary>The dataset, or null when no such set exists.</summary>
    public async Task<DatasetReference?> FindAsync(string datasetId, CancellationToken ct)
    {
        if (!IsId(datasetId) || await store.TryGetManifestAsync(SetOf(datasetId), ct) is not { } manifest) return null;
        return new DatasetReference(datasetId, manifest.ToReference(store.Name));
    }

    public static bool IsId(string id) => id.Length is > 0 and <= 64 && id.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-');

    /// <summary>Unzips, validates and publishes; problems come back as <see cref="DatasetValidationException"/>.</summary>
    public async Task<DatasetReference> AcceptZipAsync(Stream zip, CancellationToken ct)
    {
        var dir = Directory.CreateTempSubdirectory("lsvcr-intake-").FullName;
        try
        {
            try
            {
                await using var buffered = new MemoryStream();
                await zip.CopyToAsync(buffered, ct);
                buffered.Position = 0;
                using var archive = new ZipArchive(buffered, ZipArchiveMode.Read);
                archive.ExtractToDirectory(dir);
            }
            catch (InvalidDataException e)
            {
                throw new DatasetValidationException([new DatasetProblem("(upload)", null, $"not a readable zip archive: {e.Message}")]);
            }
            // A zip of the folder itself (one top-level directory) is accepted too.
            var root = Directory.GetFiles(dir).Length == 0 && Directory.GetDirectories(dir) is [var only] ? only : dir;
            var problems = DatasetValidator.Validate(root);
            if (problems.Count > 0) throw new DatasetValidationException(problems);
            var id = $"ds-{Guid.NewGuid():N}"[..19];
            var set = await store.PublishDirectoryAsync(SetOf(id), Kind, root, ct: ct);
            return new DatasetReference(id, set);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Generates and publishes a synthetic dataset; the same spec gives the same set (reused).</summary>
    public async Task<DatasetReference> SyntheticAsync(SyntheticDataSpec spec, CancellationToken ct)
    {
        var id = $"synthetic-u{spec.Users}-v{spec.Videos}-c{spec.CommentsPerVideo}-s{spec.Seed}";
        if (await FindAsync(id, ct) is { } existing) return existing;
        var dir = Directory.CreateTempSubdirectory("lsvcr-synth-").FullName;
        try
        {
            var data = SyntheticDataset.Generate(new SynthOptions
            {
                Users = spec.Users, Videos = spec.Videos, Seed = spec.Seed, CommentsPerVideo = spec.CommentsPerVideo,
            });
            ReferenceLayout.Write(data, dir);
            var set = await store.PublishDirectoryAsync(SetOf(id), Kind, dir, ct: ct);
            return new DatasetReference(id, set);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
