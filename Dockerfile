# syntax=docker/dockerfile:1
# azdo-keda-scaler: a static Go binary on an empty base, run as a non-root user.
# Build: make image (or docker build --build-arg VERSION=v0.1.0 -t azdo-keda-scaler .)

ARG GO_VERSION=1.26.8

# The build stage runs on the builder's own platform and cross-compiles, so
# that a multi-arch build (docker buildx --platform linux/amd64,linux/arm64)
# needs no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY scaler/ scaler/
COPY internal/ internal/
ARG VERSION=dev
ARG REVISION=unknown
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/app.Version=${VERSION} -X github.com/azdo-keda-scaler/azdo-keda-scaler/scaler/app.Revision=${REVISION}" \
      -o /out/azdo-keda-scaler ./cmd/azdo-keda-scaler

# The final image holds the binary, CA certificates for https://dev.azure.com
# and nothing else: no shell, no package manager.
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="azdo-keda-scaler" \
      org.opencontainers.image.description="KEDA external scaler and stale-agent sweeper for Azure Pipelines" \
      org.opencontainers.image.source="https://github.com/azdo-keda-scaler/azdo-keda-scaler" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/azdo-keda-scaler /azdo-keda-scaler
# 65532 is distroless' "nonroot"; the Helm chart runs the same UID.
USER 65532:65532
EXPOSE 6000 8080
ENTRYPOINT ["/azdo-keda-scaler"]
