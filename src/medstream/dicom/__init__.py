"""DICOM specifics shared by the dicomfile, wadouri and wadors loaders."""
