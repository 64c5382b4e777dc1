namespace LSVCR.Contracts;

// Artifact sets travel as LSVCR.Core.ArtifactSetReference (store, set id, content hash): never as bytes.

/// <summary>A dataset accepted by the Runs API, stored as an artifact set in the reference layout.</summary>
public sealed record DatasetReference(string DatasetId, ArtifactSetReference Files);

/// <summary>A synthetic dataset generated for the run (the generator's main options; the rest keep their defaults).</summary>
public sealed record SyntheticDataSpec(int Users, int Videos = 0, int Seed = 42, int CommentsPerVideo = 8);
