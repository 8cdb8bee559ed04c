// Deployment entry point: every function registers itself with the Functions Framework by name.
import './ingestInteraction/index.ts';
import './routeTriage/index.ts';
import './updateProgress/index.ts';
import './mirrorToPartners/index.ts';
import './lfsProxy/index.ts';
import './finalizeArtifact/index.ts';
import './publishContent/index.ts';
import './partnerRoom/index.ts';
import './progressApi/index.ts';
