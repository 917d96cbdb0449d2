# masqued in a container: docker build -t masqued . && docker run -p 443:443/udp -p 443:443/tcp \
#   -v /etc/masqued:/etc/masqued:ro masqued -config /etc/masqued/masqued.yaml
# Build stage: a static binary.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/masqued ./cmd/masqued

# Run stage: no shell, no package manager, not root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/masqued /usr/local/bin/masqued
# Set here so masqued does not re-exec itself to enable CONNECT-UDP over HTTP/2.
ENV GODEBUG=http2xconnect=1 XDG_STATE_HOME=/var/lib
# The proxy (UDP for HTTP/3, TCP for HTTP/2 and HTTP/1.1) and the admin port;
# bind admin-listen to 0.0.0.0:9464 inside the container only if the port is
# not published beyond the host.
EXPOSE 443/udp 443/tcp 9464/tcp
USER nonroot
ENTRYPOINT ["/usr/local/bin/masqued"]
CMD ["-listen", "0.0.0.0:443", "-config", "/etc/masqued/masqued.yaml"]
