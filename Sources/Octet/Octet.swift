@_exported import OctetCore
@_exported import OctetFloat
@_exported import OctetImages
@_exported import OctetModels
