"""xDS pieces both planes share: type URLs, canonical values, the ADS client."""
